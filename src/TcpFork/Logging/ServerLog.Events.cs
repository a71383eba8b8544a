namespace TcpFork;

/// <summary>
/// Every line tcpfork logs, one method per format (as s6-tcpserverd's <c>log_*</c> functions and
/// Kestrel's SocketsLog): the format is written here and nowhere else, and each method's
/// <see cref="LineFormatAttribute"/> is the line as docs/logging.md lists it (LogFormatTests holds the
/// two together: every method's output matches its format, and the doc lists exactly these formats).
/// Each method knows its own level: <c>-q</c> keeps warnings and errors, the default adds the server's
/// own events (start, stop, timeouts, reloads), and <c>-v</c> adds a line for each connection's start
/// and end, as tcpserver's <c>-v</c> does, and the children's progress. No method allocates, unless its
/// doc says so (start-up and rare events only).
/// </summary>
internal sealed partial class ServerLog
{
    /// <summary>What every line starts with.</summary>
    public const string Prefix = "tcpfork: ";

    // ---- Start-up (once) ----

    [LineFormat("start: pid P mode ACTION listen ADDR… max-connections N backlog B")]
    public void Start(int pid, string action, string listeners, int maxConnections, int backlog)
    {
        if (IsNormal)
        {
            Write("start"u8, $"start: pid {pid:pid} mode {action:mode} listen {listeners:listen} max-connections {maxConnections:max_connections} backlog {backlog:backlog}");
        }
    }

    [LineFormat("warning: fork mode needs a parent with one thread; running: THREADS; serving in spawn mode")]
    public void ServingInSpawnMode(string threads) =>
        Write("warning.spawn-mode"u8, $"warning: fork mode needs a parent with one thread; running: {threads:threads}; serving in spawn mode");

    [LineFormat("warning: forked children get no finalizer thread: the build lacks <DirectPInvoke Include=\"TcpForkNativeAotRuntime\" /> (the TcpFork package's build props add it)")]
    public void NoFinalizerInChildren() =>
        Write("warning.no-finalizer"u8, $"warning: forked children get no finalizer thread: the build lacks <DirectPInvoke Include=\"{Interop.Runtime}\" /> (the TcpFork package's build props add it)");

    [LineFormat("warning: thread 'NAME' does not block SIGTERM/SIGINT/SIGHUP/SIGCHLD; such a signal may end tcpfork without a drain")]
    public void SignalsUnblocked(string thread) =>
        Write("warning.signals-unblocked"u8, $"warning: thread '{thread:thread}' does not block SIGTERM/SIGINT/SIGHUP/SIGCHLD; such a signal may end tcpfork without a drain");

    [LineFormat("metrics: serving /metrics on ADDR; scrapes served by ACTION children")]
    public void MetricsListening(in SockAddr address, string action)
    {
        if (IsNormal)
        {
            Write("metrics.listening"u8, $"metrics: serving /metrics on {address:address}; scrapes served by {action:action} children");
        }
    }

    // ---- Each connection (-v) ----

    [LineFormat("pid P from ADDR")]
    public void Launched(int pid, in SockAddr peer)
    {
        if (IsVerbose)
        {
            Write("launched"u8, $"pid {pid:pid} from {peer:peer}");
        }
    }

    /// <summary>tcpserver's <c>ok</c> fields, without DNS or ident: the host and info fields are empty.</summary>
    [LineFormat("ok P LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT")]
    public void Ok(int pid, in Accepted c)
    {
        if (IsVerbose)
        {
            Connection("ok"u8, pid, c, default);
        }
    }

    /// <summary>A refusal, before any child was made (hence pid 0).</summary>
    [LineFormat("deny 0 LOCALHOST:LOCALIP:LOCALPORT REMOTEHOST:REMOTEIP:REMOTEINFO:REMOTEPORT REASON")]
    public void Deny(in Accepted c, Verdict verdict)
    {
        if (IsVerbose)
        {
            Connection("deny"u8, 0, c, verdict switch
            {
                Verdict.DenyPerIp => "max-per-ip"u8,
                Verdict.DenyRate => "rate"u8,
                Verdict.DenyVerify => "verify"u8,
                Verdict.DenyTableFull => "table-full"u8,
                _ => "rule"u8,
            });
        }
    }

    private void Connection(ReadOnlySpan<byte> word, int pid, in Accepted c, ReadOnlySpan<byte> reason)
    {
        Span<byte> local = stackalloc byte[112], remote = stackalloc byte[112];
        c.Local.TryFormatIP(local, out int ll);
        c.Peer.TryFormatIP(remote, out int rl);
        if (reason.IsEmpty)
        {
            Write(word, $"{word} {pid:pid} :{local[..ll]:local_ip}:{c.Local.Port:local_port} :{remote[..rl]:peer_ip}::{c.Peer.Port:peer_port}");
        }
        else
        {
            // deny's pid is always 0: text only.
            Write(word, $"{word} {pid} :{local[..ll]:local_ip}:{c.Local.Port:local_port} :{remote[..rl]:peer_ip}::{c.Peer.Port:peer_port} {reason:reason}");
        }
    }

    /// <summary>A PROXY header named the client (the lines after it name that client, not the proxy).</summary>
    [LineFormat("proxy: ADDR via ADDR")]
    public void Proxied(in SockAddr client, in SockAddr proxy)
    {
        if (IsVerbose)
        {
            Write("proxy"u8, $"proxy: {client:peer} via {proxy:via}");
        }
    }

    [LineFormat("status: N/MAX")]
    public void Status(int count, int capacity)
    {
        if (IsVerbose)
        {
            Write("status"u8, $"status: {count:active}/{capacity:max_connections}");
        }
    }

    /// <summary><c>end P status S</c> (S the exit code, where tcpserver writes the raw wait status) or <c>end P signal NAME</c>.</summary>
    [LineFormat("end P status S")]
    [LineFormat("end P signal SIGNAME")]
    public void End(int pid, int waitStatus)
    {
        if (!IsVerbose)
        {
            return;
        }
        int signal = waitStatus & 0x7f;
        if (signal == 0)
        {
            Write("end"u8, $"end {pid:pid} status {(waitStatus >> 8) & 0xff:status}");
            return;
        }
        Span<byte> name = stackalloc byte[32];
        Write("end"u8, $"end {pid:pid} signal {name[..Interop.SignalName(signal, name)]:signal}");
    }

    // ---- The server's own events (default) ----

    [LineFormat("timeout: P idle S s; sent SIGTERM")]
    public void IdleTimeout(int pid, long quietMs)
    {
        if (IsNormal)
        {
            Write("timeout.idle"u8, $"timeout: {pid:pid} idle {quietMs / 1000.0:seconds|0.#} s; sent SIGTERM");
        }
    }

    [LineFormat("timeout: P lifetime S s; sent SIGTERM")]
    public void LifetimeTimeout(int pid, long ageMs)
    {
        if (IsNormal)
        {
            Write("timeout.lifetime"u8, $"timeout: {pid:pid} lifetime {ageMs / 1000.0:seconds|0.#} s; sent SIGTERM");
        }
    }

    [LineFormat("timeout: P ignored SIGTERM; sent SIGKILL")]
    public void TimeoutKilled(int pid)
    {
        if (IsNormal)
        {
            Write("timeout.kill"u8, $"timeout: {pid:pid} ignored SIGTERM; sent SIGKILL");
        }
    }

    [LineFormat("rules: reloaded N rules")]
    public void RulesReloaded(int count)
    {
        if (IsNormal)
        {
            Write("rules.reloaded"u8, $"rules: reloaded {count:count} rules");
        }
    }

    /// <summary>A reload failed (allocates: the reason is the exception's text, shortened and escaped).</summary>
    [LineFormat("warning: rules: REASON; keeping the rules in force")]
    public void RulesKept(Exception e) =>
        Write("warning.rules"u8, $"warning: rules: {(e is FormatException ? e.Message : $"{e.GetType().Name}: {Printable.Truncate(e.Message)}"):reason}; keeping the rules in force");

    /// <summary>SIGHUP re-read the TLS certificate and key (allocates: a rare event).</summary>
    [LineFormat("tls: reloaded certificate SUBJECT expires DATE")]
    public void TlsReloaded(string subject, string expires)
    {
        if (IsNormal)
        {
            Write("tls.reloaded"u8, $"tls: reloaded certificate {subject:subject} expires {expires:expires}");
        }
    }

    [LineFormat("warning: tls: REASON; keeping the certificate in force")]
    public void TlsReloadFailed(string reason) =>
        Write("warning.tls"u8, $"warning: tls: {reason:reason}; keeping the certificate in force");

    [LineFormat("stats: connections N active A allocated BYTES gc G peers-evicted E peers-refused R")]
    public void Stats(long served, int active, long allocated, int gcs, long evicted, long refused)
    {
        if (IsNormal)
        {
            Write("stats"u8, $"stats: connections {served:connections} active {active:active} allocated {allocated:allocated} gc {gcs:gc} peers-evicted {evicted:peers_evicted} peers-refused {refused:peers_refused}");
        }
    }

    [LineFormat("stop: SIGNAME; draining N connections for up to S s")]
    public void Draining(int signal, int children, TimeSpan timeout)
    {
        if (IsNormal)
        {
            Span<byte> name = stackalloc byte[32];
            Write("stop.drain"u8, $"stop: {name[..Interop.SignalName(signal, name)]:signal}; draining {children:connections} connections for up to {timeout.TotalSeconds:seconds} s");
        }
    }

    [LineFormat("stop: SIGNAME again; terminating N connections")]
    public void StopAgainTerminating(int signal, int children)
    {
        if (IsNormal)
        {
            Span<byte> name = stackalloc byte[32];
            Write("stop.terminate"u8, $"stop: {name[..Interop.SignalName(signal, name)]:signal} again; terminating {children:connections} connections");
        }
    }

    [LineFormat("stop: SIGNAME again; already terminating N children, SIGKILL to any left in S s")]
    public void StopAgainWhileTerminating(int signal, int children, long killInMs)
    {
        Span<byte> name = stackalloc byte[32];
        Write("stop.again-terminating"u8, $"stop: {name[..Interop.SignalName(signal, name)]:signal} again; already terminating {children:children} children, SIGKILL to any left in {Math.Max(0, killInMs) / 1000.0:seconds|0.#} s");
    }

    [LineFormat("stop: SIGNAME again; already sent SIGKILL, waiting for N children")]
    public void StopAgainAfterKill(int signal, int children)
    {
        Span<byte> name = stackalloc byte[32];
        Write("stop.again-killed"u8, $"stop: {name[..Interop.SignalName(signal, name)]:signal} again; already sent SIGKILL, waiting for {children:children} children");
    }

    [LineFormat("stop: drain timeout; sent SIGTERM to N children, SIGKILL to any left in G s")]
    [LineFormat("stop: second stop signal; sent SIGTERM to N children, SIGKILL to any left in G s")]
    public void Terminating(bool secondSignal, int signalled, TimeSpan grace)
    {
        ReadOnlySpan<byte> why = secondSignal ? "second stop signal"u8 : "drain timeout"u8;
        Write(secondSignal ? "stop.second-signal"u8 : "stop.drain-timeout"u8, $"stop: {why}; sent SIGTERM to {signalled:children} children, SIGKILL to any left in {grace.TotalSeconds:seconds} s");
    }

    [LineFormat("stop: grace period over; sent SIGKILL to N children")]
    public void GracePeriodOver(int killed) => Write("stop.kill"u8, $"stop: grace period over; sent SIGKILL to {killed:children} children");

    [LineFormat("exit: N connections; D drained, T terminated, K killed")]
    public void Exit(long served, long drained, long terminated, long killed)
    {
        if (IsNormal)
        {
            Write("exit"u8, $"exit: {served:connections} connections; {drained:drained} drained, {terminated:terminated} terminated, {killed:killed} killed");
        }
    }

    // ---- Upgrades (SIGUSR2, docs/upgrade.md) ----

    /// <summary>The old parent spawned the new one (allocates: the path is a string; once per upgrade).</summary>
    [LineFormat("upgrade: started PATH as pid P; waiting up to S s for it to serve")]
    public void UpgradeStarted(string path, int pid, long timeoutMs)
    {
        if (IsNormal)
        {
            Write("upgrade.started"u8, $"upgrade: started {path:path} as pid {pid:pid}; waiting up to {timeoutMs / 1000.0:seconds|0.#} s for it to serve");
        }
    }

    [LineFormat("upgrade: pid P took over N listeners from pid OLD")]
    public void UpgradeTookOver(int pid, int listeners, int oldPid)
    {
        if (IsNormal)
        {
            Write("upgrade.took-over"u8, $"upgrade: pid {pid:pid} took over {listeners:listeners} listeners from pid {oldPid:old_pid}");
        }
    }

    [LineFormat("upgrade: new parent P serves; handing over N listeners, draining A connections")]
    public void UpgradeHandedOver(int pid, int listeners, int active)
    {
        if (IsNormal)
        {
            Write("upgrade.handed-over"u8, $"upgrade: new parent {pid:pid} serves; handing over {listeners:listeners} listeners, draining {active:connections} connections");
        }
    }

    /// <summary>Allocates (the path); once per failed upgrade.</summary>
    [LineFormat("warning: upgrade: unable to start PATH: REASON; serving on")]
    public void UpgradeSpawnFailed(string path, Errno error) =>
        Write("warning.upgrade-spawn"u8, $"warning: upgrade: unable to start {path:path}: {Interop.ErrorText(error):reason}; serving on");

    [LineFormat("warning: upgrade: new parent P not serving after S s; sent SIGKILL")]
    public void UpgradeTimedOut(int pid, long timeoutMs) =>
        Write("warning.upgrade-timeout"u8, $"warning: upgrade: new parent {pid:pid} not serving after {timeoutMs / 1000.0:seconds|0.#} s; sent SIGKILL");

    /// <summary>The new parent ended: before it served (the upgrade failed; this one serves on), or after it took over.</summary>
    [LineFormat("warning: upgrade: new parent P exited with status S before serving; serving on")]
    [LineFormat("warning: upgrade: new parent P killed by SIGNAME before serving; serving on")]
    [LineFormat("warning: upgrade: new parent P exited with status S after taking over")]
    [LineFormat("warning: upgrade: new parent P killed by SIGNAME after taking over")]
    public void UpgradeEnded(int pid, int waitStatus, bool beforeServing)
    {
        ReadOnlySpan<byte> outcome = beforeServing ? "before serving; serving on"u8 : "after taking over"u8;
        ReadOnlySpan<byte> eventName = beforeServing ? "warning.upgrade-failed"u8 : "warning.upgrade-lost"u8;
        int signal = waitStatus & 0x7f;
        if (signal == 0)
        {
            Write(eventName, $"warning: upgrade: new parent {pid:pid} exited with status {(waitStatus >> 8) & 0xff:status} {outcome}");
            return;
        }
        Span<byte> name = stackalloc byte[32];
        Write(eventName, $"warning: upgrade: new parent {pid:pid} killed by {name[..Interop.SignalName(signal, name)]:signal} {outcome}");
    }

    /// <summary>SIGUSR2 that starts nothing: upgrades off, one already under way (its new parent's pid), or the parent stopping.</summary>
    [LineFormat("warning: upgrade: SIGNAME ignored: upgrades are off (--upgrade, TcpForkServerOptions.Upgrade)")]
    [LineFormat("warning: upgrade: SIGNAME ignored: new parent P is starting")]
    [LineFormat("warning: upgrade: SIGNAME ignored: stopping")]
    public void UpgradeIgnored(bool enabled, int startingPid)
    {
        Span<byte> name = stackalloc byte[32];
        name = name[..Interop.SignalName(Interop.SIGUSR2, name)];
        if (!enabled)
        {
            Write("warning.upgrade-ignored"u8, $"warning: upgrade: {name:signal} ignored: upgrades are off (--upgrade, TcpForkServerOptions.Upgrade)");
        }
        else if (startingPid > 0)
        {
            Write("warning.upgrade-ignored"u8, $"warning: upgrade: {name:signal} ignored: new parent {startingPid:pid} is starting");
        }
        else
        {
            Write("warning.upgrade-ignored"u8, $"warning: upgrade: {name:signal} ignored: stopping");
        }
    }

    // ---- Warnings that can repeat per connection (counted by RepeatedWarnings) ----

    [LineFormat("warning: accept: REASON; pausing MS ms")]
    public void AcceptPaused(Errno error, TimeSpan backoff) =>
        Write("warning.accept-paused"u8, $"warning: accept: {Interop.ErrorText(error):reason}; pausing {backoff.TotalMilliseconds:ms} ms");

    [LineFormat("warning: accept: REASON")]
    public void AcceptFailed(Errno error) => Write("warning.accept"u8, $"warning: accept: {Interop.ErrorText(error):reason}");

    [LineFormat("warning: unable to ACTION: REASON; closed connection from ADDR")]
    public void LaunchFailed(string action, Errno error, in SockAddr peer) =>
        Write("warning.launch"u8, $"warning: unable to {action:action}: {Interop.ErrorText(error):reason}; closed connection from {peer:peer}");

    /// <summary>A connection closed without its PROXY header: not from a trusted proxy, or the header was bad, cut short or late.</summary>
    [LineFormat("warning: proxy header from ADDR: REASON; closed")]
    public void ProxyHeaderFailed(in SockAddr proxy, string reason) =>
        Write("warning.proxy-header"u8, $"warning: proxy header from {proxy:peer}: {reason:reason}; closed");

    [LineFormat("warning: per-IP table: every slot of this client's bucket has open connections; refused ADDR (N so far)")]
    public void TableFull(in SockAddr peer, long refused) =>
        Write("warning.table-full"u8, $"warning: per-IP table: every slot of this client's bucket has open connections; refused {peer:peer} ({refused:refused} so far)");

    [LineFormat("warning: P exited S after MS ms, as a .NET runtime that could not start: its handler most likely never ran; usually no thread could be created (a pids cgroup's pids.max, RLIMIT_NPROC) or no memory mapped")]
    public void ChildStartFailed(int pid, int status, long ms) =>
        Write("warning.child-start"u8, $"warning: {pid:pid} exited {status:status} after {ms:ms} ms, as a .NET runtime that could not start: its handler most likely never ran; usually no thread could be created (a pids cgroup's pids.max, RLIMIT_NPROC) or no memory mapped");

    /// <summary>The count of a repeated warning: WHAT and REASON are the warning's own words.</summary>
    [LineFormat("warning: WHAT: REASON; repeated N times in the last S s[; OUTCOME]")]
    public void Repeated(Repeat kind, string? action, Errno cause, long count, long ms, RepeatEnd end)
    {
        double seconds = ms / 1000.0;
        ReadOnlySpan<byte> outcome = end switch
        {
            RepeatEnd.Cleared => "cleared"u8,
            RepeatEnd.CauseChanged => "the cause changed"u8,
            _ => default,
        };
        ReadOnlySpan<byte> separator = outcome.IsEmpty ? default : "; "u8;
        ReadOnlySpan<byte> reason = Interop.ErrorText(cause);
        switch (kind)
        {
            case Repeat.LaunchFailed:
                Write("warning.launch.repeated"u8, $"warning: unable to {action:action}: {reason:reason}; repeated {count:count} times in the last {seconds:seconds|0.#} s{separator}{outcome:outcome}");
                break;
            case Repeat.ChildStartFailed:
                Write("warning.child-start.repeated"u8, $"warning: spawned children: exited as a .NET runtime that could not start; repeated {count:count} times in the last {seconds:seconds|0.#} s{separator}{outcome:outcome}");
                break;
            case Repeat.ProxyHeader:
                Write("warning.proxy-header.repeated"u8, $"warning: proxy header: {action:reason}; repeated {count:count} times in the last {seconds:seconds|0.#} s{separator}{outcome:outcome}");
                break;
            case Repeat.TableFull:
                Write("warning.table-full.repeated"u8, $"warning: per-IP table: every slot of this client's bucket has open connections; repeated {count:count} times in the last {seconds:seconds|0.#} s{separator}{outcome:outcome}");
                break;
            default:
                Write("warning.accept.repeated"u8, $"warning: accept: {reason:reason}; repeated {count:count} times in the last {seconds:seconds|0.#} s{separator}{outcome:outcome}");
                break;
        }
    }

    // ---- Metrics scrapes (docs/metrics.md) ----

    [LineFormat("warning: metrics: unable to ACTION a scrape child: REASON; closed the scrape from ADDR")]
    public void ScrapeLaunchFailed(string action, Errno error, in SockAddr peer) =>
        Write("warning.metrics.launch"u8, $"warning: metrics: unable to {action:action} a scrape child: {Interop.ErrorText(error):reason}; closed the scrape from {peer:peer}");

    [LineFormat("metrics: N scrapes running; closed the scrape from ADDR")]
    public void ScrapesBusy(in SockAddr peer, int running)
    {
        if (IsVerbose)
        {
            Write("metrics.busy"u8, $"metrics: {running:running} scrapes running; closed the scrape from {peer:peer}");
        }
    }

    /// <summary>In a scrape child: the scrape was not answered with the metrics (REASON: what came, or an HTTP status sent).</summary>
    [LineFormat("metrics: scrape from ADDR: REASON")]
    public void ScrapeFailed(in SockAddr peer, string reason)
    {
        if (IsVerbose)
        {
            Write("metrics.scrape"u8, $"metrics: scrape from {peer:peer}: {reason:reason}");
        }
    }

    // ---- The library's hooks ----

    /// <summary>Logged once per hook and exception type; the message's first line only.</summary>
    [LineFormat("warning: the HOOK hook threw TYPE: MESSAGE; CONSEQUENCE")]
    public void HookThrew(string hook, Exception e, string consequence)
    {
        ReadOnlySpan<char> message = e.Message;
        int end = message.IndexOfAny('\r', '\n');
        Write("warning.hook-threw"u8, $"warning: the {hook:hook} hook threw {e.GetType().Name:type}: {(end < 0 ? message : message[..end]):message}; {consequence:consequence}");
    }

    [LineFormat("warning: the HOOK hook allocated N bytes in the parent; hooks must not allocate (see docs/fork-safety.md)")]
    public void HookAllocated(string hook, long bytes) =>
        Write("warning.hook-allocated"u8, $"warning: the {hook:hook} hook allocated {bytes:bytes} bytes in the parent; hooks must not allocate (see docs/fork-safety.md)");

    // ---- In a child (each line written at once) ----

    [LineFormat("warning: unable to exec PROGRAM: REASON")]
    public void ExecFailed(string program, Errno error) => Write("warning.exec"u8, $"warning: unable to exec {program:program}: {Interop.ErrorText(error):reason}");

    [LineFormat("error: P: handler failed: TYPE: MESSAGE")]
    public void HandlerFailed(Exception e) => Write("error.handler"u8, $"error: {Interop.GetPid():pid}: handler failed: {e.GetType().Name:type}: {e.Message:message}");

    /// <summary>A handler ran out of the memory <see cref="ChildLimits.AddressSpace"/> gave it; the child exits 1.</summary>
    [LineFormat("error: P: handler exceeded the memory limit (N bytes)")]
    public void MemoryLimitExceeded(long bytes) => Write("error.memory-limit"u8, $"error: {Interop.GetPid():pid}: handler exceeded the memory limit ({bytes:bytes} bytes)");

    [LineFormat("P: received N bytes; echoing")]
    public void EchoReceived(int pid, long bytes)
    {
        if (IsVerbose)
        {
            Write("echo.received"u8, $"{pid:pid}: received {bytes:bytes} bytes; echoing");
        }
    }

    [LineFormat("P: REASON")]
    public void ChildError(int pid, Errno error)
    {
        if (IsVerbose)
        {
            Write("child.error"u8, $"{pid:pid}: {Interop.ErrorText(error):reason}");
        }
    }

    /// <summary>A child's TLS handshake failed (a client speaking plaintext, a bad certificate, a timeout); the child exits 1.</summary>
    [LineFormat("tls: P: handshake failed: REASON")]
    public void TlsHandshakeFailed(int pid, string reason)
    {
        if (IsNormal)
        {
            Write("tls.handshake-failed"u8, $"tls: {pid:pid}: handshake failed: {Printable.Truncate(reason):reason}");
        }
    }

    [LineFormat("tls: P: PROTOCOL CIPHER alpn ALPN client SUBJECT session SESSION")]
    public void TlsEstablished(int pid, string protocol, string cipher, string alpn, string client, string session)
    {
        if (IsVerbose)
        {
            Write("tls.established"u8, $"tls: {pid:pid}: {protocol:protocol} {cipher:cipher} alpn {alpn:alpn} client {client:client} session {session:session}");
        }
    }

    /// <summary>A handler's own line (<see cref="TcpFork.Connection.WriteLog"/>): at every level, as the handler chose to write it.</summary>
    [LineFormat("P: MESSAGE")]
    public void HandlerMessage(int pid, string message) => Write("message"u8, $"{pid:pid}: {message:message}");
}

/// <summary>How a run of repeated warnings ended, for its count line.</summary>
internal enum RepeatEnd
{
    /// <summary>Still going (a periodic count) or the parent is exiting.</summary>
    None,

    /// <summary>The condition is over.</summary>
    Cleared,

    /// <summary>The same warning came with another reason.</summary>
    CauseChanged,
}

/// <summary>A log method's line as docs/logging.md lists it (after <c>tcpfork: </c>): UPPER-CASE words are the variable fields.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
internal sealed class LineFormatAttribute(string format) : Attribute
{
    public string Format { get; } = format;
}
