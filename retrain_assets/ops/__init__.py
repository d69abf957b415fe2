"""The ops of the jobs a person launches (jobs.py assembles them): one module per concern."""
