"""People who sign in to the web UI: users, sign-in sessions and sign-in throttling."""
