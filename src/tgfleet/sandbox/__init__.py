"""A local MTProto 2.0 server that real, unmodified Telethon clients connect to (DESIGN §11).

``transport`` frames packets (TcpFull, TcpAbridged, TcpIntermediate), ``mtproto`` encrypts,
decrypts and builds service messages, and ``server`` runs the asyncio server that hands each
decoded request to a dispatcher (the world model) and always answers.
"""
