from agentry_memory.main import main

main()
