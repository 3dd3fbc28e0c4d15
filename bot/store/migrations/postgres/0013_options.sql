-- What an event fixes for every entry (`/event start`: ratio, model and its gateway, watermark,
-- audio, resolution, duration), as a JSON object of the fixed settings only (bot/guild.py
-- FixedSettings); '{}' fixes nothing, which is what every earlier event did.
ALTER TABLE events ADD COLUMN fixed TEXT NOT NULL DEFAULT '{}';

-- A create whose answer was lost is looked for in the gateway's task list; a task some job
-- already has is never adopted by another (bot/engine/recovery.py).
CREATE INDEX jobs_provider_task ON jobs (provider, task_id) WHERE task_id IS NOT NULL;
