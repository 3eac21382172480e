from computility.cli.main import main

main()
