-- `system` is the local CLI's and the background services' principal: no user may be created as, or renamed to,
-- it (audit rows would be indistinguishable). A trigger rather than a CHECK, so a pre-existing row of that name
-- can still be disabled or changed.
CREATE FUNCTION users_reserved_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'system' AND (TG_OP = 'INSERT' OR OLD.name IS DISTINCT FROM NEW.name) THEN
        RAISE EXCEPTION 'the user name ''system'' is reserved for the local CLI and background services'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_reserved_name BEFORE INSERT OR UPDATE OF name ON users
    FOR EACH ROW EXECUTE FUNCTION users_reserved_name();
