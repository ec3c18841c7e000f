"""The county's leaders: who they are (the roster's command structure) and what they are told."""
