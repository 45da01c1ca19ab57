from billing_local.stripe_double import main

main()
