"""`ramboot serve`: the control plane (boot answers, events, state, the fleet page)."""
