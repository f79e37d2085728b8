"""The web console: server-rendered pages, their static files and the offline API docs."""
