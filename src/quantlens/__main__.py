from quantlens.cli import main

main()
