namespace TcpFork;

/// <summary>
/// The parent: one thread, one epoll loop over the listeners and a signalfd, with its timers as the
/// epoll timeout. The request path is a short chain of steps: accept → admit (policies, the Verify
/// hook) → launch → record; and per child exit: reap → log → resume. The stop sequence is
/// <see cref="Drain"/>'s, the per-child timeouts <see cref="ChildTimeouts"/>', the hooks
/// <see cref="HookCalls"/>', every log line <see cref="ServerLog"/>'s. Everything is allocated before
/// the first connection (tables sized by the connection limit, one log buffer), so the loop allocates
/// nothing; docs/fork-safety.md says why that matters and tests/ParentInvariantTests hold it.
/// </summary>
internal sealed unsafe class ParentLoop : IDisposable
{
    private const int AcceptBatch = 64;

    private readonly Listener[] _listeners;
    private readonly ILauncher _launcher;
    private readonly ServerLog _log;
    private readonly RepeatedWarnings _repeats;
    private readonly TcpForkServerOptions _options;
    private readonly ChildTable _children;
    private readonly AccessPolicy _policy;
    private readonly Func<IReadOnlyList<AccessRule>>? _reloadRules;
    private readonly HookCalls _hooks;
    private readonly ChildTimeouts _timeouts;
    private readonly Drain _drain;
    /// <summary>The idle timeout reads TCP_INFO, so the parent keeps its copy of each connection until the child ends.</summary>
    private readonly bool _keepConnections;
    /// <summary>The local address is for the ok/deny lines and exec's environment: not worth a system call otherwise.</summary>
    private readonly bool _needLocalAddress;
    private readonly Poller _poller;
    /// <summary>Connections accepted since start, in parent-only memory: it changes with every connection.</summary>
    private readonly long* _served;
    private bool _polling;
    /// <summary>After an accept or launch failure, when to accept again.</summary>
    private long _resumeAt;

    public ParentLoop(Listener[] listeners, ILauncher launcher, ServerLog log, TcpForkServerOptions options,
        AccessPolicy policy, Func<IReadOnlyList<AccessRule>>? reloadRules, ParentMemory memory)
    {
        _served = memory.Allocate<long>(1);
        _listeners = listeners;
        _launcher = launcher;
        _log = log;
        _repeats = new RepeatedWarnings(log, memory);
        _options = options;
        _policy = policy;
        _reloadRules = reloadRules;
        _keepConnections = options.IdleTimeout is not null;
        _children = new ChildTable(options.MaxConnections, memory, _keepConnections);
        _needLocalAddress = log.IsVerbose || launcher.NeedsLocalAddress;
        _hooks = new HookCalls(options, log);
        _timeouts = new ChildTimeouts(options, _children, log, Environment.TickCount64);
        _drain = new Drain(options, _children, log);
        _poller = new Poller(memory);
    }

    /// <summary>
    /// Settles the parent before anyone can connect: gives back what start-up used (parsing, DNS…) —
    /// every resident anonymous page is a page-table entry each fork copies and each child's exit tears
    /// down — and lets the finalizer thread finish what that collection gave it, so no descriptor closes
    /// behind the loop's back and, in fork mode, nothing is left for it before it is parked
    /// (docs/fork-safety.md, invariant 3).
    /// </summary>
    public static void Settle()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
    }

    /// <summary>Serves until a stop signal has drained every child; returns the exit code.</summary>
    public int Run()
    {
        SetPolling(true);
        while (_drain.Phase != StopPhase.Done)
        {
            WaitAndDispatch();
            RunTimers(Environment.TickCount64);
            _log.Flush();
        }
        _repeats.Tick(Environment.TickCount64, all: true);
        _log.Exit(*_served, _drain.Drained, _drain.Terminated, _drain.Killed);
        _log.Flush();
        return 0;
    }

    private void WaitAndDispatch()
    {
        for (int i = 0, n = _poller.Wait(NextTimeout()); i < n; i++)
        {
            ulong tag = _poller.TagAt(i);
            if (tag != Poller.SignalTag && _polling)
            {
                AcceptFrom(_listeners[(int)tag]);
            }
            for (int signal; tag == Poller.SignalTag && (signal = _poller.NextSignal()) != 0;)
            {
                OnSignal(signal);
            }
        }
    }

    /// <summary>Every signal the parent acts on, in one place.</summary>
    private void OnSignal(int signal)
    {
        switch (signal)
        {
            case Interop.SIGCHLD:
                ReapChildren();
                break;
            case Interop.SIGTERM or Interop.SIGINT when _drain.Phase == StopPhase.Serving:
                StopListening();
                _drain.Begin(signal, Environment.TickCount64);
                break;
            case Interop.SIGTERM or Interop.SIGINT:
                _drain.Again(signal, Environment.TickCount64);
                break;
            case Interop.SIGHUP:
                if (_reloadRules is not null)
                {
                    _policy.Reload(_reloadRules, _log);
                }
                _log.Stats(*_served, _children.Count, GC.GetAllocatedBytesForCurrentThread(), GC.CollectionCount(0), _policy.Peers.Evicted, _policy.Peers.Refused);
                break;
        }
    }

    private void AcceptFrom(Listener listener)
    {
        for (int i = 0; i < AcceptBatch && _polling && AcceptOne(listener); i++)
        {
        }
    }

    /// <summary>Accepts one connection and serves it; false when none was waiting or accept failed.</summary>
    private bool AcceptOne(Listener listener)
    {
        SockAddr peer = default;
        int len = SockAddr.Capacity;
        int fd = Interop.Accept4(listener.Fd.Fd, &peer, &len, Interop.SOCK_CLOEXEC);
        if (fd < 0)
        {
            OnAcceptError(Interop.LastError);
            return false;
        }
        peer.Length = len;
        if (peer.IsUnix)
        {
            peer.Uid = Interop.PeerUid(fd); // a unix client has no IP: the policies judge it by its uid
        }
        Serve(fd, peer);
        return true;
    }

    private void OnAcceptError(Errno error)
    {
        long now = Environment.TickCount64;
        switch (error)
        {
            case Errno.EAGAIN:
                return;
            case Errno.EMFILE or Errno.ENFILE or Errno.ENOBUFS or Errno.ENOMEM:
                if (_repeats.First(Repeat.AcceptPaused, error, now))
                {
                    _log.AcceptPaused(error, _options.ErrorBackoff);
                }
                BackOff(now);
                return;
            default:
                // ECONNABORTED, EPROTO, network errors: that connection is gone; the next is fine.
                if (_log.IsNormal && _repeats.First(Repeat.AcceptFailed, error, now))
                {
                    _log.AcceptFailed(error);
                }
                return;
        }
    }

    /// <summary>One connection: admit → launch → record. The parent's copy is closed on every path (or kept for the idle timeout).</summary>
    private void Serve(int fd, in SockAddr peer)
    {
        long now = Environment.TickCount64;
        _repeats.Cleared(Repeat.AcceptPaused, now);
        Accepted c = default;
        c.Peer = peer;
        if (_needLocalAddress)
        {
            int len = SockAddr.Capacity;
            Interop.GetSockName(fd, &c.Local, &len);
            c.Local.Length = len;
        }
        c.Number = ++*_served;
        Verdict verdict = Admit(ref c, now);
        if (verdict != Verdict.Allow)
        {
            Refuse(fd, c, verdict, now);
            return;
        }
        int pid = _launcher.Launch(fd, c, out Errno error);
        if (pid < 0 || !_keepConnections)
        {
            Interop.Close(fd);
        }
        if (pid < 0)
        {
            LaunchFailed(error, peer, now);
            return;
        }
        Record(pid, c, fd, now);
    }

    private Verdict Admit(ref Accepted c, long now)
    {
        Verdict verdict = _policy.Admit(c.Peer, now, out c.FromSameIp);
        return verdict == Verdict.Allow && !_hooks.Verify(c.Peer) ? Verdict.DenyVerify : verdict;
    }

    private void Refuse(int fd, in Accepted c, Verdict verdict, long now)
    {
        if (verdict == Verdict.DenyPerIp && _policy.Message is { } message)
        {
            fixed (byte* m = message)
            {
                Interop.SendFlags(fd, m, (nuint)message.Length, Interop.MSG_DONTWAIT | Interop.MSG_NOSIGNAL);
            }
        }
        Interop.Close(fd);
        if (verdict == Verdict.DenyTableFull && _repeats.First(Repeat.TableFull, 0, now))
        {
            _log.TableFull(c.Peer, _policy.Peers.Refused);
        }
        _log.Deny(c, verdict);
    }

    private void LaunchFailed(Errno error, in SockAddr peer, long now)
    {
        if (_repeats.First(Repeat.LaunchFailed, error, now, _launcher.Action))
        {
            _log.LaunchFailed(_launcher.Action, error, peer);
        }
        if (error is Errno.EAGAIN or Errno.ENOMEM)
        {
            BackOff(now);
        }
    }

    private void Record(int pid, in Accepted c, int fd, long now)
    {
        _repeats.Cleared(Repeat.LaunchFailed, now);
        _children.Add(pid, c.Peer, now, _keepConnections ? fd : -1);
        _policy.Started(c.Peer, now);
        _log.Launched(pid, c.Peer);
        _log.Ok(pid, c);
        _log.Status(_children.Count, _children.Capacity);
        if (_children.IsFull)
        {
            SetPolling(false);
        }
    }

    private void ReapChildren()
    {
        int status, pid;
        while ((pid = Interop.WaitPid(-1, &status, Interop.WNOHANG)) > 0)
        {
            if (_children.Remove(pid, out SockAddr peer, out int fd, out long started, out bool signalled))
            {
                Reaped(pid, status, peer, fd, started, signalled);
            }
        }
        if (!_polling && CanAccept(Environment.TickCount64))
        {
            SetPolling(true);
        }
    }

    private void Reaped(int pid, int status, in SockAddr peer, int fd, long started, bool signalled)
    {
        long now = Environment.TickCount64;
        if (signalled || _drain.Phase is StopPhase.Terminating or StopPhase.Killing)
        {
            // tcpfork ended this child: nothing it started may keep the connection (a grandchild that
            // ignores SIGTERM, or outlived a child that did not). ESRCH: its group is empty already.
            Interop.Kill(-pid, Interop.SIGKILL);
        }
        _hooks.Exited(pid, status, started, now);
        if (fd >= 0)
        {
            Interop.Close(fd);
        }
        _policy.Ended(peer);
        _drain.ChildEnded();
        _log.End(pid, status);
        if (_launcher.StartFailureStatus >= 0)
        {
            CheckStarted(pid, status, now - started, now);
        }
        _log.Status(_children.Count, _children.Capacity);
    }

    /// <summary>
    /// A spawned child that exits with the status of a .NET runtime that could not start (before Main,
    /// so before its handler) gets a line saying why that usually happens: the NativeAOT runtime exits
    /// without a word when it cannot create its finalizer thread. A handler may return that status too,
    /// hence "usually"; the line is rate-limited like every per-connection warning.
    /// </summary>
    private void CheckStarted(int pid, int status, long ranMs, long now)
    {
        if ((status & 0x7f) != 0 || ((status >> 8) & 0xff) != _launcher.StartFailureStatus)
        {
            _repeats.Cleared(Repeat.ChildStartFailed, now);
        }
        else if (_repeats.First(Repeat.ChildStartFailed, 0, now))
        {
            _log.ChildStartFailed(pid, _launcher.StartFailureStatus, ranMs);
        }
    }

    /// <summary>
    /// The first stop signal: no new connections. Connections the kernel has completed wait in the accept
    /// queue, and closing a listener resets them, so they are served first: a TCP listener first gets a
    /// filter that drops new SYNs (their clients retry and then find the port closed: refused, not reset),
    /// so the queue stops growing and this ends under any load; a unix listener, which takes no filter,
    /// gives at most one backlog's worth more.
    /// </summary>
    private void StopListening()
    {
        SetPolling(false);
        foreach (Listener listener in _listeners)
        {
            int limit = !listener.Address.IsUnix && Interop.DropIncomingSyns(listener.Fd.Fd) ? int.MaxValue : _options.Backlog;
            for (int i = 0; i < limit && !_children.IsFull && AcceptOne(listener); i++)
            {
            }
            listener.Dispose();
        }
    }

    private void RunTimers(long now)
    {
        _repeats.Tick(now);
        _timeouts.Check(now);
        _drain.Tick(now);
        if (!_polling && CanAccept(now))
        {
            SetPolling(true);
        }
    }

    private bool CanAccept(long now) => _drain.Phase == StopPhase.Serving && !_children.IsFull && now >= _resumeAt;

    private void BackOff(long now)
    {
        _resumeAt = now + (long)_options.ErrorBackoff.TotalMilliseconds;
        SetPolling(false);
    }

    /// <summary>Milliseconds until the next timer, or -1 for none.</summary>
    private int NextTimeout()
    {
        long now = Environment.TickCount64;
        long next = Math.Min(_drain.Deadline, _timeouts.NextCheck);
        if (!_polling && _drain.Phase == StopPhase.Serving && !_children.IsFull)
        {
            next = Math.Min(next, _resumeAt);
        }
        return next == Drain.NoDeadline ? -1 : (int)Math.Clamp(next - now, 0, int.MaxValue);
    }

    /// <summary>Adds or removes the listeners from epoll: while full or backing off, clients wait in the backlog.</summary>
    private void SetPolling(bool on)
    {
        if (on != _polling)
        {
            for (int i = 0; i < _listeners.Length; i++)
            {
                _poller.Watch(_listeners[i].Fd.Fd, (ulong)i, on);
            }
            _polling = on;
        }
    }

    public void Dispose()
    {
        foreach (Listener l in _listeners)
        {
            l.Dispose();
        }
        _poller.Dispose();
        _launcher.Dispose();
        SignalMask.DiscardPending();
    }
}
