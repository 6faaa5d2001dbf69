from vaetraj.cli.app import main

main()
