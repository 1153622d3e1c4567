from agentry_reasoner.main import main

main()
