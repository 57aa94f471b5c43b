-- 0015: Gmail API quota units spent per Google Cloud project and UTC day
-- (docs/gmail.md, "The daily threshold").
--
-- Google charges for a project's units beyond a daily threshold (80,000,000).
-- Every worker adds the units of each Gmail command it ran to the row of the
-- command's project and of the current UTC day (the database's clock, so the
-- workers of a pool agree on the day), and reads the sum back: for the
-- lattice_gmail_project_day_units gauge, the alert share and the optional hard
-- stop. A row per project and day; old days may be deleted at any time.
CREATE TABLE IF NOT EXISTS gmail_project_units (
    project    text        NOT NULL,
    day        date        NOT NULL,
    units      bigint      NOT NULL DEFAULT 0 CHECK (units >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, day)
);
