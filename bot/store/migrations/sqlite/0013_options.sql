-- What an event fixes for every entry (`/event start`: ratio, model and its gateway, watermark,
-- audio, resolution, duration), as a JSON object of the fixed settings only (bot/guild.py
-- FixedSettings); '{}' fixes nothing, which is what every earlier event did.
ALTER TABLE events ADD COLUMN fixed TEXT NOT NULL DEFAULT '{}';
