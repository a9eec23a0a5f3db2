from spfem_cli.cli import main

main()
