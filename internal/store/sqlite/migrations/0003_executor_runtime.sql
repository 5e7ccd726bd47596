-- The sandbox runtime an executor uses, from its heartbeat (our extension
-- of the protocol; stock executors leave it empty).
ALTER TABLE executors ADD COLUMN runtime TEXT NOT NULL DEFAULT '';
