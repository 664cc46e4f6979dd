"""Over-the-air updates without a transport: requests, fetching by URL, checks, the model store, what is active.

May import the core and model/; never paho, never detect/ or publish/."""
