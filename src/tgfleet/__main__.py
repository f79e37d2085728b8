from tgfleet.cli import main

main()
