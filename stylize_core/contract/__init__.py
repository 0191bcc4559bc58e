"""What every side shares, standard library only: the option table, Settings, the schedule, the time
model, errors, the wire protocol and its client, paths. The plug-in and the installer use exactly this."""
