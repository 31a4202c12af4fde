"""Analysis jobs: state machine, worker processes, and the service that runs them."""
