from ganpkg.cli import main

main()
