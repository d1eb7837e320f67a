from aeinspect.cli import main

main()
