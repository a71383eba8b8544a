using System.Globalization;
using System.Text;

namespace TcpFork;

/// <summary>
/// An upgrade in place (SIGUSR2, <see cref="TcpForkServerOptions.Upgrade"/>; docs/upgrade.md), both
/// sides of it. The old parent posix_spawns its executable again — the path it was started from, read
/// at start, so a binary replaced since is the one that runs — with the same arguments, in its own
/// process group, with an empty signal mask, its listeners on descriptors 3… (the <c>--metrics</c>
/// listener last, named <see cref="MetricsServer.HandOverName"/>) and a pipe's write end after them,
/// named by LISTEN_FDS/LISTEN_FDNAMES and <see cref="SocketActivation.UpgradeVariable"/>.
/// The new parent takes them as socket activation's sockets are taken, and writes one byte on the pipe
/// once its listeners are polled. On that byte the old parent stops polling its listeners and closes its
/// descriptors — nothing else: the sockets are the same open files in both processes, so the SYN filter
/// and close of a stop would hit the new parent too — and drains its children. EOF on the pipe, the new
/// parent's exit or no byte within <see cref="ReadyTimeoutMs"/> (then SIGKILL) is a failed upgrade: the
/// old parent serves on. The new parent is the old one's child until the old one exits (then init's, or
/// the service manager's): it is reaped here, never taken for a connection's child.
/// </summary>
internal sealed unsafe class Upgrade
{
    /// <summary>The epoll tag of the readiness pipe.</summary>
    public const ulong Tag = Poller.UpgradeTag;
    public const long ReadyTimeoutMs = 10_000;

    /// <summary>The service manager's variables, which the notifier removes at start and the new parent needs again.</summary>
    private static readonly string[] s_serviceVariables = ["NOTIFY_SOCKET", "WATCHDOG_USEC"];

    private readonly bool _enabled;
    private readonly string _path = "";
    private readonly string[] _argv = [];
    private readonly string[] _serviceEnvironment = [];
    /// <summary>The new parent's side: the pipe to the old parent, until this one serves; -1 otherwise.</summary>
    private int _readyFd;
    private Listener[] _listeners = [];
    /// <summary>The <c>--metrics</c> listener's descriptor, handed over with the others; -1 without metrics.</summary>
    private int _metricsFd = -1;
    private Poller? _poller;
    private ServerLog? _log;
    private ServiceNotifier? _notifier;
    /// <summary>The old parent's side: the pipe's read end while waiting for the new parent (a forked child closes it); null otherwise.</summary>
    private SafeFd? _waiting;
    private bool _handedOver;

    private Upgrade(bool enabled, int readyFd)
    {
        _enabled = enabled;
        _readyFd = readyFd;
        if (enabled)
        {
            _path = Environment.ProcessPath ?? throw new InvalidOperationException("upgrade: cannot find this program's executable");
            _argv = Encoding.UTF8.GetString(File.ReadAllBytes("/proc/self/cmdline")).TrimEnd('\0').Split('\0');
            _serviceEnvironment = [.. s_serviceVariables
                .Select(v => (Name: v, Value: Environment.GetEnvironmentVariable(v)))
                .Where(v => !string.IsNullOrEmpty(v.Value))
                .Select(v => $"{v.Name}={v.Value}")];
        }
    }

    /// <summary>
    /// At start, before the service manager's variables are removed: what an upgrade needs (the
    /// executable's path, the arguments, NOTIFY_SOCKET), when <paramref name="enabled"/>; and this
    /// process's readiness pipe when it is itself an upgrade's new parent (-1 when it is not).
    /// </summary>
    public static Upgrade AtStart(bool enabled, int readyFd) => new(enabled, readyFd);

    /// <summary>The parent's pieces an upgrade works with, once the loop has them.</summary>
    public void Attach(Listener[] listeners, Poller poller, ServerLog log, ServiceNotifier? notifier, int metricsFd)
    {
        _listeners = listeners;
        _metricsFd = metricsFd;
        _poller = poller;
        _log = log;
        _notifier = notifier;
    }

    /// <summary>The new parent being started, or the one handed over to; 0 for none.</summary>
    public int NewPid { get; private set; }

    /// <summary>When the new parent must have said it serves (<see cref="Drain.NoDeadline"/> when none is awaited).</summary>
    public long Deadline { get; private set; } = Drain.NoDeadline;

    /// <summary>The new parent, its listeners polled: tells the old parent (and systemd: MAINPID) that it serves.</summary>
    public void Serving()
    {
        if (_readyFd < 0)
        {
            return;
        }
        int me = Interop.GetPid();
        _log!.UpgradeTookOver(me, _listeners.Length, Interop.GetPPid());
        _notifier?.MainPid(me);
        _log.Flush(); // before the old parent's hand-over line
        Interop.WriteAll(_readyFd, "1"u8); // the old parent gone already (EPIPE) changes nothing here
        Interop.Close(_readyFd);
        _readyFd = -1;
    }

    /// <summary>SIGUSR2: starts the new parent, unless upgrades are off, one is under way or the parent is stopping.</summary>
    public void Begin(bool serving, long now)
    {
        if (!_enabled || !serving || NewPid != 0)
        {
            _log!.UpgradeIgnored(_enabled, serving ? NewPid : 0);
            return;
        }
        int* pipe = stackalloc int[2];
        if (Interop.Pipe2(pipe, Interop.O_CLOEXEC | Interop.O_NONBLOCK) < 0)
        {
            _log!.UpgradeSpawnFailed(_path, Interop.LastError);
            return;
        }
        int pid = Spawn(pipe[1], out Errno error);
        Interop.Close(pipe[1]); // the new parent holds the only write end: its exit is EOF here
        if (pid < 0)
        {
            Interop.Close(pipe[0]);
            _log!.UpgradeSpawnFailed(_path, error);
            return;
        }
        NewPid = pid;
        _waiting = new SafeFd(pipe[0]);
        _poller!.Watch(pipe[0], Tag, on: true);
        Deadline = now + ReadyTimeoutMs;
        _notifier?.Reloading();
        _log!.UpgradeStarted(_path, pid, ReadyTimeoutMs);
    }

    /// <summary>
    /// The new parent with the listeners on 3…, the pipe after them. Each source is first copied above
    /// that range (close-on-exec, in this process), so no dup2 in the child overwrites one still to come.
    /// </summary>
    private int Spawn(int readyWriteEnd, out Errno error)
    {
        int[] passed = [.. _listeners.Select(l => l.Fd.Fd), .. _metricsFd >= 0 ? [_metricsFd] : Array.Empty<int>()];
        int n = passed.Length, above = SocketActivation.FirstFd + n + 1;
        var sources = new int[n + 1];
        for (int i = 0; i <= n; i++)
        {
            sources[i] = Interop.DupCloseOnExec(i < n ? passed[i] : readyWriteEnd, above);
        }
        // A service manager's socket keeps its name; one tcpfork opened itself has none; the metrics listener has its own.
        IEnumerable<string> names = _listeners.Select(l => l.ActivationName ?? "").Concat(_metricsFd >= 0 ? [MetricsServer.HandOverName] : []);
        string[] remove = [SignalMask.ReexecVariable, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", SocketActivation.UpgradeVariable, "WATCHDOG_PID", .. s_serviceVariables];
        string[] add =
        [
            $"LISTEN_FDS={n.ToString(CultureInfo.InvariantCulture)}",
            $"LISTEN_FDNAMES={string.Join(':', names)}",
            $"{SocketActivation.UpgradeVariable}={Interop.GetPid().ToString(CultureInfo.InvariantCulture)}:{(SocketActivation.FirstFd + n).ToString(CultureInfo.InvariantCulture)}",
            .. _serviceEnvironment,
        ];
        using var command = NativeCommand.Program(_path, _argv, NativeCommand.Environ(remove).Concat(add), reservedEnvSlots: 0);
        using var spawn = new SpawnAttributes(ownGroup: false);
        int pid = -1;
        bool copied = sources.All(fd => fd >= 0);
        int rc = copied ? Interop.PosixSpawn(&pid, command.Path, spawn.Descriptors(sources), spawn.Attributes, command.Argv, command.Envp) : (int)Interop.LastError;
        if (copied)
        {
            spawn.Done();
        }
        foreach (int fd in sources.Where(fd => fd >= 0))
        {
            Interop.Close(fd);
        }
        error = (Errno)rc;
        return rc == 0 ? pid : -1;
    }

    /// <summary>The readiness pipe is readable: true when the new parent serves (hand over now); EOF is a failure, logged when it is reaped.</summary>
    public bool OnReadable(int active)
    {
        byte b;
        nint r = _waiting is null ? 0 : Interop.Read(_waiting.Fd, &b, 1);
        if (r < 0)
        {
            return false; // EAGAIN: nothing yet
        }
        StopWaiting();
        if (r == 0)
        {
            return false; // it exited (or closed the pipe) without serving: SIGCHLD brings its status
        }
        _handedOver = true;
        _log!.UpgradeHandedOver(NewPid, _listeners.Length, active);
        return true;
    }

    /// <summary>The old parent's listeners, at the hand-over: their files stay (the new parent's now), their descriptors close.</summary>
    public void ReleaseListeners()
    {
        foreach (Listener l in _listeners)
        {
            l.KeepFile();
        }
    }

    /// <summary>A process the child table does not know was reaped: true if it was the new parent (logged; before serving, the upgrade failed).</summary>
    public bool Reaped(int pid, int status)
    {
        if (pid != NewPid || pid == 0)
        {
            return false;
        }
        if (_waiting is not null)
        {
            StopWaiting();
        }
        _log!.UpgradeEnded(pid, status, beforeServing: !_handedOver);
        if (!_handedOver)
        {
            NewPid = 0; // another SIGUSR2 may try again
            _notifier?.Reloaded();
        }
        return true;
    }

    /// <summary>No word from the new parent in time: it is killed (and reaped, and logged, as any failed one).</summary>
    public void Tick(long now)
    {
        if (_waiting is not null && now >= Deadline)
        {
            Interop.Kill(NewPid, Interop.SIGKILL);
            _log!.UpgradeTimedOut(NewPid, ReadyTimeoutMs);
            StopWaiting();
        }
    }

    private void StopWaiting()
    {
        if (_waiting is not null)
        {
            _poller!.Watch(_waiting.Fd, Tag, on: false);
            _waiting.Dispose();
            _waiting = null;
        }
        Deadline = Drain.NoDeadline;
    }
}
