namespace TcpFork;

/// <summary>
/// The parent: one thread, one epoll loop over the listeners and a signalfd, with its timers as the
/// epoll timeout. Per connection: accept → launch → record → close; per child exit: reap → log →
/// resume. Everything is allocated before the first connection (tables sized by the connection
/// limit, one log buffer), so the loop itself allocates nothing; docs/fork-safety.md says why that
/// matters and tests/ParentInvariantTests hold it.
/// </summary>
internal sealed unsafe class ParentLoop : IDisposable
{
    private const ulong SignalTag = ulong.MaxValue;
    private const int AcceptBatch = 64;

    private enum Phase { Serving, Draining, Terminating, Killing, Done }

    private readonly Listener[] _listeners;
    private readonly ILauncher _launcher;
    private readonly ServerLog _log;
    private readonly RepeatedWarnings _repeats;
    private readonly TcpForkServerOptions _options;
    private readonly ChildTable _children;
    private readonly AccessPolicy _policy;
    private readonly Func<IReadOnlyList<AccessRule>>? _reloadRules;
    private readonly bool _keepConnections;
    private readonly bool _needLocalAddress;
    private readonly long _timeoutCheckMs;
    private long _nextTimeoutCheck;
    private readonly SafeFd _epoll;
    private readonly SafeFd _signals;
    private const int MaxEvents = 32;
    private const int SignalBufferSize = Interop.SignalFdInfoSize * 8;
    private readonly byte* _events;
    private readonly byte* _signalInfo;
    private readonly Counters* _n;

    /// <summary>What the loop counts, kept in parent-only memory because it changes with every connection.</summary>
    private struct Counters
    {
        public long Served, Drained, Terminated, Killed;
    }

    private Phase _phase;
    private long _phaseDeadline;
    private bool _polling;
    private long _resumeAt;

    public ParentLoop(Listener[] listeners, ILauncher launcher, ServerLog log, TcpForkServerOptions options,
        AccessPolicy policy, Func<IReadOnlyList<AccessRule>>? reloadRules, ParentMemory memory)
    {
        _events = memory.Allocate<byte>(MaxEvents * EpollEvent.MaxSize);
        _signalInfo = memory.Allocate<byte>(SignalBufferSize);
        _n = memory.Allocate<Counters>(1);
        _listeners = listeners;
        _launcher = launcher;
        _log = log;
        _repeats = new RepeatedWarnings(log, memory);
        _options = options;
        _policy = policy;
        _reloadRules = reloadRules;
        // The idle timeout reads TCP_INFO, so the parent keeps its copy of each connection until the child ends.
        _keepConnections = options.IdleTimeout is not null;
        _children = new ChildTable(options.MaxConnections, memory, _keepConnections);
        // The local address is for the ok/deny lines and exec's environment: not worth a system call otherwise.
        _needLocalAddress = log.IsNormal || launcher is ExecLauncher;
        TimeSpan shortest = new[] { options.IdleTimeout, options.MaxLifetime }.Where(t => t is not null).Select(t => t!.Value).DefaultIfEmpty(TimeSpan.Zero).Min();
        _timeoutCheckMs = shortest == TimeSpan.Zero ? 0 : Math.Clamp((long)shortest.TotalMilliseconds / 4, 50, 1000);
        _nextTimeoutCheck = _timeoutCheckMs == 0 ? long.MaxValue : Environment.TickCount64 + _timeoutCheckMs;

        SigSet set;
        Interop.SigEmptySet(&set);
        Interop.SigAddSet(&set, Interop.SIGCHLD);
        Interop.SigAddSet(&set, Interop.SIGTERM);
        Interop.SigAddSet(&set, Interop.SIGINT);
        Interop.SigAddSet(&set, Interop.SIGHUP);
        SignalMask.Block();
        _signals = new SafeFd((int)Interop.Check(Interop.SignalFd(-1, &set, Interop.SFD_NONBLOCK | Interop.SFD_CLOEXEC), "signalfd"));
        _epoll = new SafeFd((int)Interop.Check(Interop.EpollCreate1(Interop.EPOLL_CLOEXEC), "epoll_create1"));
        byte* ev = stackalloc byte[EpollEvent.MaxSize];
        EpollEvent.Write(ev, Interop.EPOLLIN, SignalTag);
        Interop.Check(Interop.EpollCtl(_epoll.Fd, Interop.EPOLL_CTL_ADD, _signals.Fd, ev), "epoll_ctl");
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

    /// <summary>Bytes this thread has allocated so far; the HUP stats line reports it.</summary>
    private static long Allocated => GC.GetAllocatedBytesForCurrentThread();

    /// <summary>Serves until a stop signal has drained every child; returns the exit code.</summary>
    public int Run()
    {
        SetPolling(true);
        while (_phase != Phase.Done)
        {
            WaitAndDispatch();
            RunTimers();
            _log.Flush();
        }
        _repeats.Tick(Environment.TickCount64, all: true);
        if (_log.IsNormal)
        {
            _log.Write($"exit: {_n->Served} connections; {_n->Drained} drained, {_n->Terminated} terminated, {_n->Killed} killed");
        }
        _log.Flush();
        return 0;
    }

    private void WaitAndDispatch()
    {
        int n;
        while (Interop.Retry(n = Interop.EpollWait(_epoll.Fd, _events, MaxEvents, NextTimeout()))) { }
        if (n < 0)
        {
            Interop.Throw("epoll_wait");
        }
        for (int i = 0; i < n; i++)
        {
            ulong tag = EpollEvent.DataAt(_events, i);
            if (tag == SignalTag)
            {
                ReadSignals();
            }
            else if (_polling)
            {
                AcceptFrom(_listeners[(int)tag]);
            }
        }
    }

    private void ReadSignals()
    {
        nint n;
        while ((n = Interop.Read(_signals.Fd, _signalInfo, SignalBufferSize)) > 0)
        {
            for (nint off = 0; off + Interop.SignalFdInfoSize <= n; off += Interop.SignalFdInfoSize)
            {
                OnSignal(*(int*)(_signalInfo + off));
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
            case Interop.SIGTERM:
            case Interop.SIGINT:
                Stop(signal);
                break;
            case Interop.SIGHUP:
                ReloadRules();
                _log.Write($"stats: connections {_n->Served} active {_children.Count} allocated {Allocated} gc {GC.CollectionCount(0)} peers-evicted {_policy.Peers.Evicted} peers-refused {_policy.Peers.Refused}");
                break;
        }
    }

    private void AcceptFrom(Listener listener)
    {
        for (int i = 0; i < AcceptBatch && _polling && AcceptOne(listener); i++)
        {
        }
    }

    /// <summary>Accepts one connection and launches it; false when none was waiting or accept failed.</summary>
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
        Launch(fd, peer);
        return true;
    }

    private void OnAcceptError(Errno error)
    {
        switch (error)
        {
            case Errno.EAGAIN:
                return;
            case Errno.EMFILE or Errno.ENFILE or Errno.ENOBUFS or Errno.ENOMEM:
                if (_repeats.First(Repeat.AcceptPaused, error, Environment.TickCount64))
                {
                    _log.Write($"warning: accept: {Interop.ErrorText(error)}; pausing {_options.ErrorBackoff.TotalMilliseconds} ms");
                }
                BackOff();
                return;
            default:
                // ECONNABORTED, EPROTO, network errors: that connection is gone; the next is fine.
                if (_log.IsNormal && _repeats.First(Repeat.AcceptFailed, error, Environment.TickCount64))
                {
                    _log.Write($"warning: accept: {Interop.ErrorText(error)}");
                }
                return;
        }
    }

    /// <summary>One connection: verify → launch → record; the parent's copy is closed on every path (or kept for the idle timeout).</summary>
    private void Launch(int fd, in SockAddr peer)
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
        c.Number = ++_n->Served;

        Verdict verdict = _policy.Admit(c.Peer, now, out c.FromSameIp);
        if (verdict == Verdict.Allow && _options.Verify is { } verify && !CallHook(verify, c.Peer))
        {
            verdict = Verdict.DenyVerify;
        }
        if (verdict != Verdict.Allow)
        {
            Refuse(fd, c, verdict);
            return;
        }
        int pid = _launcher.Launch(fd, c, out Errno error);
        if (pid < 0 || !_keepConnections)
        {
            Interop.Close(fd);
        }
        if (pid < 0)
        {
            if (_repeats.First(Repeat.LaunchFailed, error, now, _launcher.Action))
            {
                _log.Write($"warning: unable to {_launcher.Action}: {Interop.ErrorText(error)}; closed connection from {peer}");
            }
            if (error is Errno.EAGAIN or Errno.ENOMEM)
            {
                BackOff();
            }
            return;
        }
        _repeats.Cleared(Repeat.LaunchFailed, now);
        _children.Add(pid, peer, now, _keepConnections ? fd : -1);
        _policy.Started(peer, now);
        if (_log.IsNormal)
        {
            _log.Write($"pid {pid} from {peer}");
            LogConnection("ok"u8, pid, c, default);
            _log.Write($"status: {_children.Count}/{_children.Capacity}");
        }
        if (_children.IsFull)
        {
            SetPolling(false);
        }
    }

    private void Refuse(int fd, in Accepted c, Verdict verdict)
    {
        if (verdict == Verdict.DenyPerIp && _policy.Message is { } message)
        {
            fixed (byte* m = message)
            {
                Interop.SendFlags(fd, m, (nuint)message.Length, Interop.MSG_DONTWAIT | Interop.MSG_NOSIGNAL);
            }
        }
        Interop.Close(fd);
        if (verdict == Verdict.DenyTableFull && _repeats.First(Repeat.TableFull, 0, Environment.TickCount64))
        {
            _log.Write($"warning: per-IP table: every slot of this client's bucket has open connections; refused {c.Peer} ({_policy.Peers.Refused} so far)");
        }
        if (_log.IsNormal)
        {
            ReadOnlySpan<byte> reason = verdict switch
            {
                Verdict.DenyPerIp => "max-per-ip"u8,
                Verdict.DenyRate => "rate"u8,
                Verdict.DenyVerify => "verify"u8,
                Verdict.DenyTableFull => "table-full"u8,
                _ => "rule"u8,
            };
            LogConnection("deny"u8, 0, c, reason);
        }
    }

    /// <summary>tcpserver's line: <c>ok PID LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT</c> (no DNS: the names are empty).</summary>
    private void LogConnection(ReadOnlySpan<byte> word, int pid, in Accepted c, ReadOnlySpan<byte> reason)
    {
        Span<byte> local = stackalloc byte[112], remote = stackalloc byte[112];
        c.Local.TryFormatIP(local, out int ll);
        c.Peer.TryFormatIP(remote, out int rl);
        if (reason.IsEmpty)
        {
            _log.Write($"{word} {pid} :{local[..ll]}:{c.Local.Port} :{remote[..rl]}::{c.Peer.Port}");
        }
        else
        {
            _log.Write($"{word} {pid} :{local[..ll]}:{c.Local.Port} :{remote[..rl]}::{c.Peer.Port} {reason}");
        }
    }

    private bool _hookWarned;

    /// <summary>Exception types a hook has thrown and been logged for: made once, so a hook that keeps throwing logs once per type and the lookup allocates nothing.</summary>
    private readonly Type?[] _verifyThrew = new Type?[8], _exitedThrew = new Type?[8];

    /// <summary>
    /// Runs a user hook on the parent's thread, and says so once if it allocated (docs/fork-safety.md,
    /// invariant 3). A hook that throws cannot take the parent down: for Verify the connection is refused
    /// (logged <c>deny … verify</c>). The exception itself was allocated, so a throwing call is not also
    /// reported as allocating.
    /// </summary>
    private bool CallHook(VerifyConnection verify, in SockAddr peer)
    {
        long before = Allocated;
        try
        {
            bool allowed = verify(new ClientAddress(in peer));
            WarnIfAllocated("Verify", before);
            return allowed;
        }
#pragma warning disable CA1031 // Any exception from user code in the parent is logged and survived: the parent must not die.
        catch (Exception e)
#pragma warning restore CA1031
        {
            WarnIfThrew(_verifyThrew, "Verify", e, "connections it throws for are refused");
            return false;
        }
    }

    private void CallHook(ChildExited exited, in ChildExit exit)
    {
        long before = Allocated;
        try
        {
            exited(exit);
            WarnIfAllocated("ChildExited", before);
        }
#pragma warning disable CA1031 // As above: logged once per type, and the parent serves on.
        catch (Exception e)
#pragma warning restore CA1031
        {
            WarnIfThrew(_exitedThrew, "ChildExited", e, "the parent serves on");
        }
    }

    private void WarnIfThrew(Type?[] seen, string hook, Exception e, string consequence)
    {
        Type type = e.GetType();
        for (int i = 0; i < seen.Length; i++)
        {
            if (seen[i] == type)
            {
                return;
            }
            if (seen[i] is null)
            {
                seen[i] = type;
                _log.HookThrew(hook, e, consequence);
                return;
            }
        }
        // More distinct types than slots: those go unlogged rather than costing the parent memory.
    }

    private void WarnIfAllocated(string hook, long before)
    {
        long allocated = Allocated - before;
        if (allocated > 0 && !_hookWarned)
        {
            _hookWarned = true;
            _log.Write($"warning: the {hook} hook allocated {allocated} bytes in the parent; hooks must not allocate (see docs/fork-safety.md)");
        }
    }

    private void ReloadRules()
    {
        if (_reloadRules is null)
        {
            return;
        }
        try
        {
            IReadOnlyList<AccessRule> rules = _reloadRules();
            _policy.ReplaceRules(rules);
            _log.Write($"rules: reloaded {rules.Count} rules");
        }
#pragma warning disable CA1031 // Nothing a file holds may stop the parent: any failure keeps the rules in force.
        catch (Exception e)
#pragma warning restore CA1031
        {
            _log.Write($"warning: rules: {(e is FormatException ? e.Message : $"{e.GetType().Name}: {Printable.Truncate(e.Message)}")}; keeping the rules in force");
        }
        // The reload's garbage would otherwise stay resident, and every fork copies the parent's pages.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Idle timeout and lifetime: SIGTERM once, SIGKILL after the grace period, each to the child's whole process group.</summary>
    private void CheckTimeouts(long now)
    {
        long idleMs = _options.IdleTimeout is { } idle ? (long)idle.TotalMilliseconds : long.MaxValue;
        long lifeMs = _options.MaxLifetime is { } life ? (long)life.TotalMilliseconds : long.MaxValue;
        long graceMs = (long)_options.KillGrace.TotalMilliseconds;
        for (int slot = 0; slot < _children.Capacity; slot++)
        {
            int pid = _children.PidAt(slot);
            if (pid == 0)
            {
                continue;
            }
            ref long signalled = ref _children.SignalledAt(slot);
            if (signalled != 0)
            {
                if (now - signalled >= graceMs && signalled > 0)
                {
                    Interop.KillGroup(pid, Interop.SIGKILL);
                    signalled = -1;
                    _log.Write($"timeout: {pid} ignored SIGTERM; sent SIGKILL");
                }
                continue;
            }
            long age = now - _children.StartedAt(slot);
            int fd = _children.FdAt(slot);
            long quiet = fd >= 0 && idleMs != long.MaxValue ? Interop.IdleMilliseconds(fd) : -1;
            if (age >= lifeMs)
            {
                Interop.KillGroup(pid, Interop.SIGTERM);
                signalled = now;
                _log.Write($"timeout: {pid} lifetime {age / 1000.0:0.#} s; sent SIGTERM");
            }
            else if (quiet >= idleMs && age >= idleMs)
            {
                Interop.KillGroup(pid, Interop.SIGTERM);
                signalled = now;
                _log.Write($"timeout: {pid} idle {quiet / 1000.0:0.#} s; sent SIGTERM");
            }
        }
    }

    private void ReapChildren()
    {
        int status, pid;
        while ((pid = Interop.WaitPid(-1, &status, Interop.WNOHANG)) > 0)
        {
            if (!_children.Remove(pid, out SockAddr peer, out int fd, out long started, out bool signalled))
            {
                continue;
            }
            if (signalled || _phase is Phase.Terminating or Phase.Killing)
            {
                // tcpfork ended this child: nothing it started may keep the connection (a grandchild that
                // ignores SIGTERM, or outlived a child that did not). ESRCH: its group is empty already.
                Interop.Kill(-pid, Interop.SIGKILL);
            }
            if (_options.ChildExited is { } exited)
            {
                CallHook(exited, new ChildExit(pid, status, TimeSpan.FromMilliseconds(Environment.TickCount64 - started)));
            }
            if (fd >= 0)
            {
                Interop.Close(fd);
            }
            _policy.Ended(peer);
            if (_phase == Phase.Draining)
            {
                _n->Drained++;
            }
            if (_log.IsNormal)
            {
                LogEnd(pid, status);
            }
            if (_launcher.StartFailureStatus >= 0)
            {
                CheckStarted(pid, status, started);
            }
            if (_log.IsNormal)
            {
                _log.Write($"status: {_children.Count}/{_children.Capacity}");
            }
        }
        if (_phase != Phase.Serving && _children.Count == 0)
        {
            _phase = Phase.Done;
        }
        else if (!_polling && CanAccept())
        {
            SetPolling(true);
        }
    }

    /// <summary>
    /// A spawned child that exits with the status of a .NET runtime that could not start (before Main,
    /// so before its handler) gets a line saying why that usually happens: the NativeAOT runtime exits
    /// without a word when it cannot create its finalizer thread. A handler may return that status too,
    /// hence "usually"; the line is rate-limited like every per-connection warning.
    /// </summary>
    private void CheckStarted(int pid, int status, long started)
    {
        long now = Environment.TickCount64;
        if ((status & 0x7f) != 0 || ((status >> 8) & 0xff) != _launcher.StartFailureStatus)
        {
            _repeats.Cleared(Repeat.ChildStartFailed, now);
        }
        else if (_repeats.First(Repeat.ChildStartFailed, 0, now))
        {
            _log.Write($"warning: {pid} exited {_launcher.StartFailureStatus} after {now - started} ms, as a .NET runtime that could not start: its handler most likely never ran; usually no thread could be created (a pids cgroup's pids.max, RLIMIT_NPROC) or no memory mapped");
        }
    }

    private void LogEnd(int pid, int status)
    {
        int signal = status & 0x7f;
        if (signal == 0)
        {
            _log.Write($"end {pid} status {(status >> 8) & 0xff}");
            return;
        }
        Span<byte> name = stackalloc byte[32];
        name = name[..Interop.SignalName(signal, name)];
        _log.Write($"end {pid} signal {name}");
    }

    private bool CanAccept() => _phase == Phase.Serving && !_children.IsFull && Environment.TickCount64 >= _resumeAt;

    private void BackOff()
    {
        _resumeAt = Environment.TickCount64 + (long)_options.ErrorBackoff.TotalMilliseconds;
        SetPolling(false);
    }

    /// <summary>Adds or removes the listeners from epoll: while full or backing off, clients wait in the backlog.</summary>
    private void SetPolling(bool on)
    {
        if (on == _polling)
        {
            return;
        }
        byte* ev = stackalloc byte[EpollEvent.MaxSize];
        for (int i = 0; i < _listeners.Length; i++)
        {
            EpollEvent.Write(ev, Interop.EPOLLIN, (ulong)i);
            Interop.Check(Interop.EpollCtl(_epoll.Fd, on ? Interop.EPOLL_CTL_ADD : Interop.EPOLL_CTL_DEL, _listeners[i].Fd.Fd, ev), "epoll_ctl");
        }
        _polling = on;
    }

    /// <summary>SIGTERM/SIGINT: stop listening and drain; a second one moves on to terminating the children.</summary>
    private void Stop(int signal)
    {
        Span<byte> name = stackalloc byte[32];
        name = name[..Interop.SignalName(signal, name)];
        if (_phase == Phase.Serving)
        {
            SetPolling(false);
            // Connections the kernel has completed wait in the accept queue, and closing a listener resets
            // them: serve them first, so a drain cuts no connection the kernel accepted.
            AcceptQueued();
            foreach (Listener l in _listeners)
            {
                l.Dispose();
            }
            _phase = Phase.Draining;
            _phaseDeadline = Environment.TickCount64 + (long)_options.DrainTimeout.TotalMilliseconds;
            if (_log.IsNormal)
            {
                _log.Write($"stop: {name}; draining {_children.Count} connections for up to {_options.DrainTimeout.TotalSeconds} s");
            }
            if (_children.Count == 0)
            {
                _phase = Phase.Done;
            }
        }
        else if (_phase == Phase.Draining)
        {
            if (_log.IsNormal)
            {
                _log.Write($"stop: {name} again; terminating {_children.Count} connections");
            }
            _phaseDeadline = 0;
            _stopRepeated = true;
        }
        else if (_phase is Phase.Terminating or Phase.Killing)
        {
            // Nothing more to do: the children have SIGTERM already, and SIGKILL comes at the end of the grace period.
            if (_phase == Phase.Terminating)
            {
                _log.Write($"stop: {name} again; already terminating {_children.Count} children, SIGKILL to any left in {Math.Max(0, _phaseDeadline - Environment.TickCount64) / 1000.0:0.#} s");
            }
            else
            {
                _log.Write($"stop: {name} again; already sent SIGKILL, waiting for {_children.Count} children");
            }
        }
    }

    private bool _stopRepeated;

    /// <summary>
    /// Accepts and launches the connections waiting in the listeners' queues, as far as the table has
    /// room. A TCP listener first gets a filter that drops new SYNs (their clients retry and then find
    /// the port closed: refused, not reset), so the queue stops growing and this ends under any load; a
    /// unix listener, which takes no filter, gives at most one backlog's worth more.
    /// </summary>
    private void AcceptQueued()
    {
        foreach (Listener listener in _listeners)
        {
            int limit = !listener.Address.IsUnix && Interop.DropIncomingSyns(listener.Fd.Fd) ? int.MaxValue : _options.Backlog;
            for (int i = 0; i < limit && !_children.IsFull && AcceptOne(listener); i++)
            {
            }
        }
    }

    private void RunTimers()
    {
        long now = Environment.TickCount64;
        _repeats.Tick(now);
        if (now >= _nextTimeoutCheck)
        {
            CheckTimeouts(now);
            _nextTimeoutCheck = now + _timeoutCheckMs;
        }
        if (!_polling && CanAccept())
        {
            SetPolling(true);
        }
        if (_phaseDeadline == 0 && _phase is Phase.Serving or Phase.Killing or Phase.Done)
        {
            return;
        }
        if (now < _phaseDeadline)
        {
            return;
        }
        switch (_phase)
        {
            case Phase.Draining:
                _n->Terminated = _children.SignalAll(Interop.SIGTERM);
                double grace = _options.KillGrace.TotalSeconds;
                if (_stopRepeated)
                {
                    _log.Write($"stop: second stop signal; sent SIGTERM to {_n->Terminated} children, SIGKILL to any left in {grace} s");
                }
                else
                {
                    _log.Write($"stop: drain timeout; sent SIGTERM to {_n->Terminated} children, SIGKILL to any left in {grace} s");
                }
                _phase = Phase.Terminating;
                _phaseDeadline = now + (long)_options.KillGrace.TotalMilliseconds;
                break;
            case Phase.Terminating:
                _n->Killed = _children.SignalAll(Interop.SIGKILL);
                _n->Terminated -= _n->Killed;
                _log.Write($"stop: grace period over; sent SIGKILL to {_n->Killed} children");
                _phase = Phase.Killing;
                _phaseDeadline = 0;
                break;
        }
    }

    /// <summary>Milliseconds until the next timer, or -1 for none.</summary>
    private int NextTimeout()
    {
        long now = Environment.TickCount64;
        long next = long.MaxValue;
        if (!_polling && _phase == Phase.Serving && !_children.IsFull)
        {
            next = _resumeAt;
        }
        if (_phase is Phase.Draining or Phase.Terminating)
        {
            next = Math.Min(next, _phaseDeadline);
        }
        next = Math.Min(next, _nextTimeoutCheck);
        return next == long.MaxValue ? -1 : (int)Math.Clamp(next - now, 0, int.MaxValue);
    }

    public void Dispose()
    {
        foreach (Listener l in _listeners)
        {
            l.Dispose();
        }
        _epoll.Dispose();
        _signals.Dispose();
        _launcher.Dispose();
        // Signals that arrive after the last signalfd read must not end a process that has drained
        // cleanly (unblocked, a late TERM or HUP would exit 143 or 129). So they stay blocked in this
        // thread, and those already pending are discarded (setting SIG_IGN does that, blocked or not),
        // so a program that unblocks them later does not receive stale ones. Run() documents this.
        foreach (int signal in (ReadOnlySpan<int>)[Interop.SIGCHLD, Interop.SIGTERM, Interop.SIGINT, Interop.SIGHUP])
        {
            Interop.Signal(signal, Interop.SIG_IGN);
            Interop.Signal(signal, Interop.SIG_DFL);
        }
    }
}
