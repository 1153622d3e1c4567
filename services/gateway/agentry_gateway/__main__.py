from agentry_gateway.main import main

main()
