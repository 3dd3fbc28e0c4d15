-- Admitting a job in one call (bot/store/admission.py): the server's admission lock, every
-- guard, and only when all hold the job, its first transition, its reservation, the day rows'
-- share and the news of it, in one autocommitted statement, so the lock is held for the
-- server's own work, never across a round trip.
-- SQLite needs none of it: its statements run inline, each taking microseconds, under the
-- file's write lock (bot/store/sqlite.py), so this migration is empty there.
-- Each statement below reads a snapshot taken after the lock (a VOLATILE function in READ
-- COMMITTED), and the lock is let go at COMMIT. The job's columns are those of
-- bot/store/admission.py's _JOB_COLUMNS: a migration that adds a column a new job must set
-- replaces this function.
CREATE FUNCTION seedance_admit(
    p_id TEXT, p_guild TEXT, p_channel TEXT, p_user TEXT, p_roles TEXT, p_request TEXT,
    p_provider TEXT, p_model TEXT, p_state TEXT, p_credits INTEGER, p_context TEXT,
    p_event TEXT, p_hold INTEGER, p_now DOUBLE PRECISION, p_fleet TEXT, p_detail TEXT,
    p_paid BOOLEAN,
    c_guild TEXT[], c_user TEXT[], c_since DOUBLE PRECISION[], c_event TEXT[],
    c_outside BOOLEAN[], c_by_day BOOLEAN[], c_limit BIGINT[],
    a_guild_queued INTEGER, a_user_queued INTEGER, a_per_minute INTEGER,
    p_news TEXT, p_payload TEXT
) RETURNS TABLE (guard_values BIGINT[], admitted BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_values BIGINT[] := '{}';
    n BIGINT;
    ok BOOLEAN := TRUE;
    i INTEGER;
    waiting TEXT[] := ARRAY['awaiting_approval', 'queued'];
    today DOUBLE PRECISION := floor(p_now / 86400.0) * 86400.0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('seedance:admit:' || p_guild));
    FOR i IN 1 .. COALESCE(array_length(c_limit, 1), 0) LOOP
        IF c_by_day[i] THEN
            SELECT COALESCE(SUM(credits), 0) INTO n FROM usage_days
             WHERE guild_id = c_guild[i] AND user_id = COALESCE(c_user[i], '*')
               AND day >= c_since[i]
               AND CASE WHEN c_event[i] IS NOT NULL THEN event_id = c_event[i]
                        WHEN c_outside[i] THEN event_id = '' ELSE TRUE END;
        ELSE
            SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits
                                          WHEN 'release' THEN -credits ELSE 0 END), 0)
              INTO n FROM ledger
             WHERE guild_id = c_guild[i] AND reserved_at >= c_since[i]
               AND job_id NOT IN (SELECT ref FROM purchased_credits WHERE kind = 'spend')
               AND (c_user[i] IS NULL OR user_id = c_user[i])
               AND CASE WHEN c_event[i] IS NOT NULL THEN event_id = c_event[i]
                        WHEN c_outside[i] THEN event_id IS NULL ELSE TRUE END;
        END IF;
        found_values := found_values || n;
        ok := ok AND n + p_credits <= c_limit[i];
    END LOOP;
    IF a_guild_queued <> 0 THEN
        SELECT COUNT(*) INTO n FROM jobs WHERE guild_id = p_guild AND state = ANY (waiting);
        found_values := found_values || n;
        ok := ok AND n < a_guild_queued;
    END IF;
    IF a_user_queued <> 0 THEN
        SELECT COUNT(*) INTO n FROM jobs
         WHERE guild_id = p_guild AND user_id = p_user AND state = ANY (waiting);
        found_values := found_values || n;
        ok := ok AND n < a_user_queued;
    END IF;
    IF a_per_minute <> 0 THEN
        SELECT COUNT(*) INTO n FROM jobs
         WHERE guild_id = p_guild AND user_id = p_user AND created_at > p_now - 60.0;
        found_values := found_values || n;
        ok := ok AND n < a_per_minute;
    END IF;
    IF ok THEN
        INSERT INTO jobs (id, guild_id, channel_id, user_id, role_ids, request, provider, model,
                          state, seq, credits_estimate, context, event_id, hold_result,
                          created_at, updated_at, fleet)
        VALUES (p_id, p_guild, p_channel, p_user, p_roles, p_request, p_provider, p_model,
                p_state, nextval('jobs_seq'), p_credits, p_context, p_event, p_hold,
                p_now, p_now, p_fleet);
        INSERT INTO job_transitions (job_id, from_state, to_state, at, detail)
        VALUES (p_id, NULL, p_state, p_now, p_detail);
        INSERT INTO ledger (job_id, user_id, guild_id, event_id, kind, credits, at, reserved_at)
        VALUES (p_id, p_user, p_guild, p_event, 'reserve', p_credits, p_now, p_now);
        IF NOT p_paid THEN
            INSERT INTO usage_days (guild_id, user_id, event_id, day, credits)
            VALUES (p_guild, p_user, COALESCE(p_event, ''), today, p_credits),
                   (p_guild, '*', COALESCE(p_event, ''), today, p_credits)
            ON CONFLICT (guild_id, user_id, event_id, day)
            DO UPDATE SET credits = usage_days.credits + excluded.credits;
        END IF;
        IF p_news IS NOT NULL THEN
            PERFORM pg_notify(p_news, p_payload);
        END IF;
    END IF;
    RETURN QUERY SELECT found_values, ok;
END
$$;
