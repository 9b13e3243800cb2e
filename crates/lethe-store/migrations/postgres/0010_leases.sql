-- Case events are claimed by one publisher at a time (several instances
-- may run): a publisher leases a batch until this time (milliseconds, UTC);
-- an instance that dies lets its lease run out and another publishes.
ALTER TABLE case_events ADD COLUMN lease_until BIGINT;

-- Which instance holds a job's lease (host, process id and a random
-- suffix): for operators and for tests that stop one instance.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;

-- Workers look for jobs whose lease ran out as often as for ready ones.
CREATE INDEX jobs_leased ON jobs (state, lease_until);
