namespace TcpFork;

/// <summary>
/// <see cref="TcpForkServerOptions.IdleTimeout"/> and <see cref="TcpForkServerOptions.MaxLifetime"/>:
/// a child past either gets SIGTERM, and SIGKILL after <see cref="TcpForkServerOptions.KillGrace"/>,
/// each sent to its whole process group. Idle time is read from the kernel (TCP_INFO's last data sent
/// and received) on the parent's copy of the connection, so it counts from the handshake: a client that
/// waited in the accept queue (the server full) and sent nothing is as idle on its first check as one
/// served all along, and is ended at once instead of holding a slot for another whole timeout — which
/// is what lets new clients in under a flood of idle connections (docs/reliability.md, slowloris). A
/// client that sent data while it waited (unread yet) is not idle. Checked every quarter of the
/// shortest timeout (50 ms to 1 s): a scan of the child table, without allocating.
/// </summary>
internal sealed class ChildTimeouts
{
    private readonly ChildTable _children;
    private readonly ServerLog _log;
    private readonly long _idleMs, _lifeMs, _graceMs, _everyMs;

    public ChildTimeouts(TcpForkServerOptions options, ChildTable children, ServerLog log, long now)
    {
        _children = children;
        _log = log;
        _idleMs = options.IdleTimeout is { } idle ? (long)idle.TotalMilliseconds : long.MaxValue;
        _lifeMs = options.MaxLifetime is { } life ? (long)life.TotalMilliseconds : long.MaxValue;
        _graceMs = (long)options.KillGrace.TotalMilliseconds;
        long shortest = Math.Min(_idleMs, _lifeMs);
        _everyMs = shortest == long.MaxValue ? 0 : Math.Clamp(shortest / 4, 50, 1000);
        NextCheck = _everyMs == 0 ? Drain.NoDeadline : now + _everyMs;
    }

    /// <summary>When <see cref="Check"/> is next due (<see cref="Drain.NoDeadline"/> without timeouts).</summary>
    public long NextCheck { get; private set; }

    /// <summary>Signals every child past a timeout, or past its grace after one; then schedules the next check.</summary>
    public void Check(long now)
    {
        if (now < NextCheck)
        {
            return;
        }
        NextCheck = now + _everyMs;
        for (int slot = 0; slot < _children.Capacity; slot++)
        {
            int pid = _children.PidAt(slot);
            if (pid != 0)
            {
                CheckOne(slot, pid, now);
            }
        }
    }

    private void CheckOne(int slot, int pid, long now)
    {
        ref long signalled = ref _children.SignalledAt(slot);
        if (signalled != 0)
        {
            if (signalled > 0 && now - signalled >= _graceMs)
            {
                Interop.KillGroup(pid, Interop.SIGKILL);
                signalled = -1;
                _log.TimeoutKilled(pid);
            }
            return;
        }
        long age = now - _children.StartedAt(slot);
        int fd = _children.FdAt(slot);
        long quiet = fd >= 0 && _idleMs != long.MaxValue ? Interop.IdleMilliseconds(fd) : -1;
        if (age >= _lifeMs)
        {
            Interop.KillGroup(pid, Interop.SIGTERM);
            signalled = now;
            _log.LifetimeTimeout(pid, age);
        }
        else if (quiet >= _idleMs && (age >= _idleMs || Interop.UnreadBytes(fd) == 0))
        {
            Interop.KillGroup(pid, Interop.SIGTERM);
            signalled = now;
            _log.IdleTimeout(pid, quiet);
        }
    }
}
