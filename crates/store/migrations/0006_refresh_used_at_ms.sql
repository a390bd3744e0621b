-- When a refresh token was spent, to the millisecond. The reuse leeway (a retry of a token
-- spent a moment ago is not a replay) is about two seconds: measured in whole seconds, a
-- retry 1.5 s later looked 2 s late whenever the refresh landed late in a second.
-- `used_at` keeps whole seconds like every other `*_at` column.
ALTER TABLE refresh_tokens ADD COLUMN used_at_ms BIGINT;
UPDATE refresh_tokens SET used_at_ms = used_at * 1000 WHERE used_at IS NOT NULL;
