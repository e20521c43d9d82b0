-- Request and answer text of a trace, for projects with content capture on (JSON, capped).
ALTER TABLE traces ADD COLUMN content_json TEXT;
