from initscore.cli import main

main()
