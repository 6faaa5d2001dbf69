from vaetraj.cli._entry import main

main()
