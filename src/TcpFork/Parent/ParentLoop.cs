namespace TcpFork;

/// <summary>
/// The parent: one thread, one epoll loop over the listeners and a signalfd, with its timers as the
/// epoll timeout. The request path is a short chain of steps: accept → (read the PROXY header:
/// <see cref="ProxyHeaders"/>) → admit (policies, the Verify hook) → launch → record; and per child
/// exit: reap → log → resume. The stop sequence is <see cref="Drain"/>'s, the per-child timeouts
/// <see cref="ChildTimeouts"/>', the hooks <see cref="HookCalls"/>', every log line <see cref="ServerLog"/>'s.
/// Everything is allocated before the first connection (tables sized by the connection limit, one log
/// buffer), so the loop allocates nothing; docs/fork-safety.md says why that matters and tests/ParentInvariantTests hold it.
/// </summary>
internal sealed unsafe class ParentLoop : IDisposable
{
    private const int AcceptBatch = 64;

    private readonly Acceptor _acceptor;
    private readonly ILauncher _launcher;
    private readonly ServerLog _log;
    private readonly RepeatedWarnings _repeats;
    private readonly TcpForkServerOptions _options;
    private readonly ChildTable _children;
    private readonly AccessPolicy _policy;
    private readonly Func<IReadOnlyList<AccessRule>>? _reloadRules;
    private readonly Action? _reloadTls;
    private readonly HookCalls _hooks;
    private readonly ChildTimeouts _timeouts;
    private readonly Drain _drain;
    private readonly StartCheck _startCheck;
    /// <summary>The idle timeout reads TCP_INFO, so the parent keeps its copy of each connection until the child ends.</summary>
    private readonly bool _keepConnections;
    /// <summary>The local address is for the ok/deny lines and exec's environment: not worth a system call otherwise.</summary>
    private readonly bool _needLocalAddress;
    private readonly Poller _poller;
    /// <summary>Connections accepted since start, in parent-only memory: it changes with every connection.</summary>
    private readonly long* _served;
    /// <summary>systemd's NOTIFY_SOCKET, when there is one.</summary>
    private readonly ServiceNotifier? _notifier;
    /// <summary>With the PROXY protocol on: connections waiting for their header.</summary>
    private readonly ProxyHeaders? _proxy;
    /// <summary>The metrics' increments (docs/metrics.md), and with <c>--metrics</c> its listener and scrape children.</summary>
    private readonly Counters _counters;
    private readonly MetricsServer? _metrics;
    /// <summary>SIGUSR2's upgrade in place (docs/upgrade.md); off unless TcpForkServerOptions.Upgrade.</summary>
    private readonly Upgrade _upgrade;

    public ParentLoop(Listener[] listeners, ILauncher launcher, ServerLog log, TcpForkServerOptions options,
        AccessPolicy policy, Func<IReadOnlyList<AccessRule>>? reloadRules, ParentMemory memory, ServiceNotifier? notifier = null,
        Counters? counters = null, MetricsServer? metrics = null, Upgrade? upgrade = null, Action? reloadTls = null)
    {
        _counters = counters ?? Counters.Private(memory);
        _metrics = metrics;
        _notifier = notifier;
        _served = memory.Allocate<long>(1);
        _launcher = launcher;
        _log = log;
        _repeats = new RepeatedWarnings(log, memory);
        _options = options;
        _policy = policy;
        _reloadRules = reloadRules;
        _reloadTls = reloadTls;
        _keepConnections = options.IdleTimeout is not null;
        _children = new ChildTable(options.MaxConnections, memory, _keepConnections);
        _needLocalAddress = log.IsVerbose || launcher.NeedsLocalAddress;
        _hooks = new HookCalls(options, log);
        _timeouts = new ChildTimeouts(options, _children, log, Environment.TickCount64);
        _poller = new Poller(memory);
        _proxy = ProxyHeaders.Create(options, _poller, _children, _repeats, log, memory, _counters);
        _drain = new Drain(options, _children, log, _proxy);
        _startCheck = new StartCheck(launcher.StartFailureStatus, _repeats, log);
        _acceptor = new Acceptor(listeners, _poller, _repeats, log, options.ErrorBackoff, _counters);
        _metrics?.Watch(_poller);
        _upgrade = upgrade ?? Upgrade.AtStart(enabled: false, readyFd: -1);
        _upgrade.Attach(listeners, _poller, log, notifier, _metrics?.ListenerFd ?? -1);
    }

    /// <summary>Serves until a stop signal has drained every child; returns the exit code.</summary>
    public int Run()
    {
        _acceptor.SetPolling(true);
        _upgrade.Serving();
        _notifier?.Ready(_children.Count, Environment.TickCount64);
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
            if (ProxyHeaders.IsTag(tag))
            {
                if (_proxy!.Ready(tag, _poller.EventsAt(i), out int fd, out Accepted c))
                {
                    AdmitAndLaunch(fd, ref c, Environment.TickCount64);
                }
            }
            else if (tag == MetricsServer.Tag)
            {
                _metrics!.Accept();
            }
            else if (tag == Upgrade.Tag)
            {
                HandOverIfReady();
            }
            else if (tag != Poller.SignalTag)
            {
                AcceptFrom((int)tag, AcceptBatch);
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
                _notifier?.Stopping(_children.Count);
                StopListening();
                _drain.Begin(signal, Environment.TickCount64);
                break;
            case Interop.SIGTERM or Interop.SIGINT:
                _drain.Again(signal, Environment.TickCount64);
                break;
            case Interop.SIGUSR2:
                _upgrade.Begin(_drain.Phase == StopPhase.Serving, Environment.TickCount64);
                break;
            case Interop.SIGHUP:
                _notifier?.Reloading();
                if (_reloadRules is not null)
                {
                    _policy.Reload(_reloadRules, _log);
                }
                _reloadTls?.Invoke();
                _notifier?.Reloaded();
                _log.Stats(*_served, _children.Count, GC.GetAllocatedBytesForCurrentThread(), GC.CollectionCount(0), _policy.Peers.Evicted, _policy.Peers.Refused);
                break;
        }
    }

    /// <summary>
    /// Accepts and serves up to <paramref name="limit"/> connections: while the listeners stay polled, or,
    /// when <paramref name="emptying"/> the queue at a stop, while the child table has room.
    /// </summary>
    private void AcceptFrom(int listener, int limit, bool emptying = false)
    {
        for (int i = 0; i < limit && (emptying ? !Full : _acceptor.Polling)
            && _acceptor.TryAccept(listener, out int fd, out SockAddr peer); i++)
        {
            Serve(fd, peer);
        }
    }

    /// <summary>One connection: (header) → admit → launch → record. The parent's copy is closed on every path (or kept for the idle timeout).</summary>
    private void Serve(int fd, in SockAddr peer)
    {
        long now = Environment.TickCount64;
        Accepted c = default;
        c.Peer = peer;
        if (_needLocalAddress)
        {
            int len = SockAddr.Capacity;
            Interop.GetSockName(fd, &c.Local, &len);
            c.Local.Length = len;
        }
        c.Number = ++*_served;
        _counters.Accepted();
        if (_proxy is null || _proxy.Begin(fd, ref c, now))
        {
            AdmitAndLaunch(fd, ref c, now);
        }
        else if (Full)
        {
            _acceptor.SetPolling(false);
        }
    }

    private void AdmitAndLaunch(int fd, ref Accepted c, long now)
    {
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
            LaunchFailed(error, c.Peer, now);
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
        _counters.Denied(verdict);
        if (verdict == Verdict.DenyTableFull && _repeats.First(Repeat.TableFull, 0, now))
        {
            _log.TableFull(c.Peer, _policy.Peers.Refused);
        }
        _log.Deny(c, verdict);
    }

    private void LaunchFailed(Errno error, in SockAddr peer, long now)
    {
        _counters.LaunchFailed();
        if (_repeats.First(Repeat.LaunchFailed, error, now, _launcher.Action))
        {
            _log.LaunchFailed(_launcher.Action, error, peer);
        }
        if (error is Errno.EAGAIN or Errno.ENOMEM)
        {
            _acceptor.BackOff(now);
        }
    }

    private void Record(int pid, in Accepted c, int fd, long now)
    {
        _repeats.Cleared(Repeat.LaunchFailed, now);
        _children.Add(pid, c.Peer, now, _keepConnections ? fd : -1);
        _counters.Started();
        _policy.Started(c.Peer, now);
        _log.Launched(pid, c.Peer);
        _log.Ok(pid, c);
        _log.Status(_children.Count, _children.Capacity);
        if (Full)
        {
            _acceptor.SetPolling(false);
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
            else
            {
                if (_metrics?.Ended(pid) != true)
                {
                    _upgrade.Reaped(pid, status);
                }
            }
        }
        ResumeIfPossible(Environment.TickCount64);
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
        _counters.Ended(status, now - started);
        _startCheck.Ended(pid, status, now - started, now);
        _log.Status(_children.Count, _children.Capacity);
    }

    /// <summary>
    /// The first stop signal: no new connections. Connections the kernel has completed wait in the accept
    /// queue, and closing a listener resets them, so they are served first (Acceptor.CloseTheDoor).
    /// </summary>
    private void StopListening()
    {
        _acceptor.SetPolling(false);
        for (int i = 0; i < _acceptor.Count; i++)
        {
            AcceptFrom(i, _acceptor.CloseTheDoor(i, _options.Backlog), emptying: true);
        }
        _acceptor.Dispose();
        while (_proxy is not null && _proxy.NextAtStop(out int fd, out Accepted c))
        {
            AdmitAndLaunch(fd, ref c, Environment.TickCount64);
        }
    }

    /// <summary>No room for another connection: the child table is full, or with the waiting PROXY headers.</summary>
    private bool Full => _children.IsFull || _proxy is { IsFull: true };

    /// <summary>
    /// The new parent serves: this one stops polling its listeners and closes its descriptors of them —
    /// no SYN filter, no accepting the queue (the sockets are the new parent's too) — and drains.
    /// </summary>
    private void HandOverIfReady()
    {
        if (_upgrade.OnReadable(_children.Count))
        {
            _notifier?.HandOver();
            _upgrade.ReleaseListeners();
            _acceptor.Dispose();
            _metrics?.HandOver(_poller);
            _drain.BeginHandOver();
        }
    }

    private void RunTimers(long now)
    {
        _repeats.Tick(now);
        _proxy?.Expire(now);
        _timeouts.Check(now);
        _drain.Tick(now);
        _upgrade.Tick(now);
        ResumeIfPossible(now);
        _notifier?.Tick(_children.Count, now);
    }

    private void ResumeIfPossible(long now)
    {
        if (!_acceptor.Polling && _drain.Phase == StopPhase.Serving && !Full && now >= _acceptor.ResumeAt)
        {
            _acceptor.SetPolling(true);
        }
    }

    /// <summary>Milliseconds until the next timer, or -1 for none.</summary>
    private int NextTimeout()
    {
        long now = Environment.TickCount64;
        long next = Math.Min(Math.Min(_drain.Deadline, _timeouts.NextCheck), Math.Min(_notifier?.NextDeadline(_children.Count) ?? Drain.NoDeadline, _upgrade.Deadline));
        next = Math.Min(next, _proxy?.NextDeadline ?? Drain.NoDeadline);
        if (!_acceptor.Polling && _drain.Phase == StopPhase.Serving && !Full)
        {
            next = Math.Min(next, _acceptor.ResumeAt);
        }
        return next == Drain.NoDeadline ? -1 : (int)Math.Clamp(next - now, 0, int.MaxValue);
    }

    public void Dispose()
    {
        _acceptor.Dispose();
        _poller.Dispose();
        _launcher.Dispose();
        _notifier?.Dispose();
        SignalMask.DiscardPending();
    }
}
