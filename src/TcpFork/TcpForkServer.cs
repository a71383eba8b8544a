using System.Runtime.CompilerServices;

namespace TcpFork;

/// <summary>
/// A process-per-connection TCP server. The parent accepts; each connection is served by
/// <c>handler</c> in a process of its own, created by fork(2) under NativeAOT or by posix_spawn(3) of
/// this same program everywhere else (see <see cref="ProcessMode"/>). In spawn mode the child runs the
/// program's <c>Main</c> again, reaches <see cref="Run"/> and serves its one connection there: so build
/// the server the same way on every run.
/// </summary>
public sealed class TcpForkServer
{
    private readonly ConnectionHandler _handler;
    private readonly TcpForkServerOptions _options;
    private readonly ExecProgram? _program;
    /// <summary>
    /// True when children run tcpfork's own code (echo, or exec of a program), which needs nothing of
    /// the runtime's inherited state: a forked child then keeps only 0, 1, 2 and its connection and
    /// starts no thread (see ForkLauncher).
    /// </summary>
    private readonly bool _minimalChildren;

    /// <summary>Creates a server that runs the asynchronous <paramref name="handler"/> for every connection, each in its own process.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The two handler kinds differ by type; a null options is the common call.")]
    public TcpForkServer(AsyncConnectionHandler handler, TcpForkServerOptions? options = null)
        : this(Synchronous(handler), options)
    {
    }

    private static ConnectionHandler Synchronous(AsyncConnectionHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        // The child is a fresh single-connection process: blocking its main thread on the task is fine.
        return connection => handler(connection).GetAwaiter().GetResult();
    }

    /// <summary>Creates a server that runs <paramref name="handler"/> for every connection, each in its own process.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The two handler kinds differ by type; a null options is the common call.")]
    public TcpForkServer(ConnectionHandler handler, TcpForkServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _handler = handler;
        _options = options ?? new TcpForkServerOptions();
        _minimalChildren = handler == (ConnectionHandler)EchoHandler.Handle;
    }


    /// <summary>
    /// Creates a server that runs <paramref name="program"/> for every connection, as tcpserver does:
    /// the connection on descriptors 0 and 1, the UCSPI variables in its environment.
    /// </summary>
    public static TcpForkServer ForProgram(ExecProgram program, TcpForkServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(program);
        options ??= new TcpForkServerOptions();
        return new TcpForkServer(ExecHandler.For(program, options.Limits), options, program);
    }

    private TcpForkServer(ConnectionHandler handler, TcpForkServerOptions? options, ExecProgram program)
        : this(handler, options)
    {
        _program = program;
        _minimalChildren = true;
    }

    /// <summary>
    /// In a spawned child, serves the inherited connection with <paramref name="handler"/> and the log
    /// level and limits the parent passed, and returns true with the handler's exit code; elsewhere
    /// returns false at once. A child spawned by a server made with <see cref="ForProgram"/> runs the
    /// parent's program instead of <paramref name="handler"/>. The child takes all of it from the
    /// parent, none from its own options, files or command line. Call it first thing in <c>Main</c> to
    /// skip the rest of start-up in spawned children (<c>tcpfork</c> does); without it,
    /// <see cref="Run"/> does the same after your set-up.
    /// </summary>
    public static bool TryServeSpawnedChild(ConnectionHandler handler, out int exitCode)
    {
        ArgumentNullException.ThrowIfNull(handler);
        exitCode = 0;
        if (ScrapeChild.TryServeSpawned(out exitCode))
        {
            return true;
        }
        if (LimitedExec.TryServeSpawned(out exitCode))
        {
            return true;
        }
        if (!ChildRole.TryTake(handler == (ConnectionHandler)EchoHandler.Handle, out int fd, out Accepted accepted, out ChildRole.Settings settings, out ExecProgram? program))
        {
            return false;
        }
        DieWithParent(settings.Parent);
        var log = new ServerLog(settings.Level, format: settings.Format, timestamps: settings.Timestamps) { ChildLineByLine = true };
        exitCode = ChildProcess.Serve(new Connection(fd, accepted, log) { TlsServer = settings.Tls }, program is null ? handler : ExecHandler.For(program, settings.Limits), settings.Limits);
        return true;
    }

    /// <summary>A spawned child of a parent with <see cref="TcpForkServerOptions.DieWithParent"/>: before its handler, and before the exec of a program.</summary>
    private static void DieWithParent(int parent)
    {
        if (parent > 0)
        {
            ChildProcess.DieWithParent(parent);
        }
    }

    /// <summary>True where fork mode is safe: NativeAOT (no JIT) on Linux. See docs/fork-safety.md.</summary>
    public static bool IsForkSupported { get; } = OperatingSystem.IsLinux() && IsNativeAot();

    /// <summary>
    /// True only without a JIT. <see cref="RuntimeFeature.IsDynamicCodeSupported"/> alone is not
    /// enough: PublishAot=true sets it false in JIT builds too (to make them behave like AOT), and
    /// forking there crashes. The JIT's own count of compiled methods is 0 only under NativeAOT.
    /// </summary>
    private static bool IsNativeAot() =>
        !RuntimeFeature.IsDynamicCodeSupported && System.Runtime.JitInfo.GetCompiledMethodCount() == 0;

    /// <summary>The mode <paramref name="requested"/> resolves to here; throws <see cref="NotSupportedException"/> for fork under JIT.</summary>
    public static ProcessMode ResolveMode(ProcessMode requested) => requested switch
    {
        ProcessMode.Auto => IsForkSupported ? ProcessMode.Fork : ProcessMode.Spawn,
        ProcessMode.Fork when !IsForkSupported => throw new NotSupportedException(
            "fork mode needs the NativeAOT build: fork() without exec is unsafe under the JIT runtime (see docs/fork-safety.md); " +
            "publish with -p:PublishAot=true, or set TcpForkServerOptions.Mode = ProcessMode.Spawn"),
        _ => requested,
    };

    /// <summary>
    /// Listens and serves until SIGTERM or SIGINT has drained the children, then returns 0. In a spawned
    /// child it serves the inherited connection instead and returns the handler's exit code.
    /// Throws <see cref="BindException"/> when a listener cannot be opened, and
    /// <see cref="ArgumentException"/> for an option or <see cref="ExecProgram"/> setting out of range
    /// (or a <see cref="TcpForkServerOptions.User"/> or <see cref="TcpForkServerOptions.Group"/> that does not exist).
    /// <para>
    /// It returns with SIGTERM, SIGINT, SIGHUP and SIGCHLD still blocked in the calling thread (and any
    /// that were pending discarded), so that a signal arriving after the drain cannot end the process
    /// with its default action: <c>return server.Run();</c> exits 0. A program that goes on after
    /// Run() and needs them unblocks them itself.
    /// </para>
    /// </summary>
    public int Run()
    {
        if (TryServeSpawnedChild(_handler, out int childExit))
        {
            return childExit;
        }
        var log = new ServerLog(_options.LogLevel, format: _options.LogFormat, timestamps: _options.LogTimestamps);
        _options.Validate();
        DescriptorBudget.Ensure(_options);
        _program?.Validate();
        // Before the thread check (loading must start none) and before the privileges are dropped (root-only key files).
        using TlsServer? tls = _options.Tls is null ? null : TlsServer.Start(_options.Tls, _minimalChildren || _program is not null ? TlsEngine.OpenSsl : TlsEngine.SslStream);
        Func<IReadOnlyList<AccessRule>> rules = () =>
            [.. _options.Rules, .. _options.RulesFile is null ? [] : AccessRule.ReadFile(_options.RulesFile)];
        using var memory = new ParentMemory();
        var policy = new AccessPolicy(_options, rules(), memory);
        ProcessMode mode = ResolveMode(_options.Mode);
        IReadOnlyList<string> extraThreads = mode == ProcessMode.Fork && !ExecsDirectly ? ForkedRuntime.ExtraThreads() : [];
        if (extraThreads.Count > 0)
        {
            if (_options.Mode == ProcessMode.Fork)
            {
                throw new InvalidOperationException(
                    $"ProcessMode.Fork needs a parent with no thread but the runtime's finalizer, and these are running: {string.Join(", ", extraThreads)}; " +
                    "start them in the handler (after Run()), or set TcpForkServerOptions.Mode to ProcessMode.Spawn or ProcessMode.Auto");
            }
            mode = ProcessMode.Spawn;
        }
        bool forks = mode == ProcessMode.Fork && !ExecsDirectly;
        if (!forks)
        {
            // Fork mode blocks the signals in its two threads instead (ParentLoop, ForkedRuntime.ParkFinalizer).
            WarnIfUnblocked(SignalMask.EnsureBlockedEverywhere(), log);
        }
        if (extraThreads.Count > 0)
        {
            // After the re-exec above, so the line is written once.
            log.ServingInSpawnMode(string.Join(", ", extraThreads));
        }
        // After the signal mask's re-exec above, which keeps the passed descriptors and the variables.
        // An upgrade's new parent takes its predecessor's listeners the same way, in place of --listen's.
        (int Fd, string? Name)[] activated = SocketActivation.Take(_options.SocketActivation, out int upgradeReadyFd);
        Upgrade upgrade = Upgrade.AtStart(_options.Upgrade, upgradeReadyFd);
        int metricsFd = MetricsServer.TakeHandedOver(ref activated, upgradeReadyFd >= 0, _options.Metrics is not null);
        if (activated.Length > 0 && _options.Listen.Count > 0 && upgradeReadyFd < 0)
        {
            throw new ArgumentException(
                $"TcpForkServerOptions.Listen cannot be combined with socket activation: the service manager passed {activated.Length} socket(s) (LISTEN_FDS); listen on them alone, or move the addresses into the .socket unit");
        }
        ServiceNotifier? notifier = _options.NotifyServiceManager ? ServiceNotifier.FromEnvironment(_options.MaxConnections, memory) : null;
        IEnumerable<ListenAddress> addresses = upgradeReadyFd >= 0 ? []
            : _options.Listen.Count > 0 || activated.Length > 0 ? _options.Listen : [ListenAddress.Parse("127.0.0.1:0")];
        SockAddr[] resolved = addresses.SelectMany(a => a.Resolve()).ToArray();
        var listeners = new List<Listener>();
        try
        {
            foreach ((int fd, string? name) in activated)
            {
                listeners.Add(Listener.Adopt(fd, name, _options));
            }
            foreach (SockAddr a in resolved)
            {
                listeners.Add(Listener.Open(a, _options));
            }
        }
        catch
        {
            listeners.ForEach(l => l.Dispose());
            throw;
        }
        // Bound while still privileged, as the listeners are.
        using MetricsServer? metrics = _options.Metrics is { } metricsAddress ? new MetricsServer(metricsAddress, metricsFd, forks, _options, log, memory) : null;
        // Found while still privileged: a process that has changed its user cannot open its own pagemap.
        ImageData? image = forks ? ImageData.Find(memory) : null;
        Privileges.Drop(_options.User, _options.Group);
        ILauncher launcher = ChooseLauncher(mode, log, image, tls);
        Counters counters = metrics?.Counters ?? Counters.Private(memory);
        counters.Start(launcher.Action, _options.MaxConnections);
        using var meter = new TcpForkMeter(counters);
        using var loop = new ParentLoop([.. listeners], launcher, log, _options, policy, _options.RulesFile is null ? null : rules, memory, notifier,
            counters, metrics, upgrade, tls is null ? null : () => tls.Reload(log));
        ParentMemory.Settle();
        if (forks)
        {
            ForkedRuntime.ParkFinalizer(TimeSpan.FromSeconds(10));
            WarnIfUnblocked(SignalMask.FirstThreadNotBlocking(), log);
            if (!_minimalChildren && !ForkedRuntime.CanRestoreFinalizer)
            {
                log.NoFinalizerInChildren();
            }
        }
        Announce(listeners, launcher, log);
        if (metrics is not null)
        {
            log.MetricsListening(metrics.Address, metrics.Action);
            log.Flush();
        }
        return loop.Run();
    }

    private static void WarnIfUnblocked(string? thread, ServerLog log)
    {
        if (thread is not null)
        {
            log.SignalsUnblocked(thread);
        }
    }

    /// <summary>
    /// A program without resource limits is spawned directly (posix_spawnp, like tcpserver's fork+exec
    /// but without copying the parent). Limits and the parent-death signal must be set between fork and
    /// exec, so then the program runs from a tcpfork child (forked, or spawned in the child role) that
    /// sets them and execs it.
    /// </summary>
    private ILauncher ChooseLauncher(ProcessMode mode, ServerLog log, ImageData? image, TlsServer? tls)
    {
        if (ExecsDirectly)
        {
            return new ExecLauncher(_program);
        }
        return mode == ProcessMode.Fork ? new ForkLauncher(_handler, log, _options.Limits, image, _minimalChildren, _options.DieWithParent, tls) : new SpawnLauncher(_options, _program, tls);
    }

    /// <summary>
    /// True when children are the program itself, spawned with no tcpfork code in between: not when the
    /// child must act before exec (limits, <see cref="TcpForkServerOptions.DieWithParent"/>, TLS).
    /// </summary>
    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(true, nameof(_program))]
    private bool ExecsDirectly => _program is not null && !_options.Limits.Any && !_options.DieWithParent && _options.Tls is null;

    private void Announce(List<Listener> listeners, ILauncher launcher, ServerLog log)
    {
        if (_options.AnnounceListening)
        {
            foreach (Listener l in listeners)
            {
                // Straight to fd 1 with write(2): seen at once even when stdout is a pipe or a file.
                Interop.WriteAll(1, System.Text.Encoding.UTF8.GetBytes(
                    l.Address.IsUnix ? $"Listening for connections on {l.Address}\n" : $"Listening for connections on port {l.Address.Port}\n"));
            }
        }
        log.Start(Interop.GetPid(), launcher.Action, string.Join(' ', listeners.Select(l => l.Inherited ? $"systemd:{l.ActivationName}={l.Address}" : l.Address.ToString())), _options.MaxConnections, _options.Backlog);
        log.Flush();
    }
}
