"""One module per CRM implementing the core's connector contract, with the retry, rate budget and paging they share.
May import the contract and the model (and the foundation they are built from); never the rest of the core."""
