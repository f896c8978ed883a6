"""Payment providers: the interface creditmeter sells credits through, Stripe, and a
development provider that needs no keys and no network."""
