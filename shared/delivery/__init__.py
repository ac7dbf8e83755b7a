"""Delivering routed plays to the outside world: the HubSpot client and the pacing it needs.

The channel senders (functions/) parse a `PlayDelivery` at their edge and call these clients;
the clients know the remote APIs, their limits and their errors, and nothing about queues or
ledgers.
"""
