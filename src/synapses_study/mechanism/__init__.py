"""The account of how the first layer inverts (account) and the committed predictions scored
(protocol)."""
