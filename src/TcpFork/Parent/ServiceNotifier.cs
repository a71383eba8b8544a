using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Unicode;

namespace TcpFork;

/// <summary>
/// The sd_notify(3) protocol, spoken to systemd (Type=notify or notify-reload): READY=1 once serving,
/// RELOADING=1 … READY=1 around a SIGHUP reload, STOPPING=1 at the first stop signal, STATUS= with the
/// connections active and the limit when that changes (at most once a second), and WATCHDOG=1 every
/// half WATCHDOG_USEC. Each is one datagram on a close-on-exec, non-blocking unix socket to
/// NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'). Messages are formatted into
/// buffers allocated at start: nothing is allocated per connection. Best effort, as sd_notify is: a
/// failed send is not retried and never blocks the parent.
/// </summary>
internal sealed unsafe class ServiceNotifier : IDisposable
{
    private const int MessageCapacity = 256;
    private const long StatusIntervalMs = 1000;
    private static readonly string[] s_variables = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

    private readonly SafeFd _socket;
    private readonly byte* _address;
    private readonly int _addressLength;
    private readonly byte* _message;
    private readonly int _limit;
    /// <summary>Half the watchdog interval in ms, or 0 without a watchdog.</summary>
    private readonly long _watchdogEveryMs;
    private long _nextWatchdog;
    private int _sentActive = -1;
    private long _nextStatus;

    private ServiceNotifier(SafeFd socket, byte* address, int addressLength, byte* message, int limit, long watchdogEveryMs)
    {
        _socket = socket;
        _address = address;
        _addressLength = addressLength;
        _message = message;
        _limit = limit;
        _watchdogEveryMs = watchdogEveryMs;
    }

    /// <summary>
    /// A notifier for the NOTIFY_SOCKET in the environment, or null without one. Removes NOTIFY_SOCKET,
    /// WATCHDOG_USEC and WATCHDOG_PID from the environment either way (the managed copy children's
    /// environments are built from, and the C library's), so no child notifies in the parent's name.
    /// </summary>
    public static ServiceNotifier? FromEnvironment(int maxConnections, ParentMemory memory)
    {
        string? socketName = Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        string? watchdogUsec = Environment.GetEnvironmentVariable("WATCHDOG_USEC");
        string? watchdogPid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        InheritedVariables.Remove(s_variables);
        if (string.IsNullOrEmpty(socketName) || socketName[0] is not ('/' or '@'))
        {
            return null; // sd_notify too ignores anything but a path or an abstract name (vsock is not for us)
        }
        byte[] name = Encoding.UTF8.GetBytes(socketName);
        if (name.Length > Interop.SockAddrUnixSize - 3)
        {
            throw new ArgumentException($"NOTIFY_SOCKET is {name.Length} bytes; a unix socket address holds at most {Interop.SockAddrUnixSize - 3}");
        }
        long everyMs = 0;
        if (ulong.TryParse(watchdogUsec, NumberStyles.None, CultureInfo.InvariantCulture, out ulong usec) && usec > 0
            && (watchdogPid is null || (int.TryParse(watchdogPid, NumberStyles.None, CultureInfo.InvariantCulture, out int forPid) && forPid == Interop.GetPid())))
        {
            everyMs = (long)Math.Max(1, Math.Min(usec / 2 / 1000, int.MaxValue));
        }
        int fd = Interop.Socket(Interop.AF_UNIX, Interop.SOCK_DGRAM | Interop.SOCK_CLOEXEC | Interop.SOCK_NONBLOCK, 0);
        if (fd < 0)
        {
            throw Interop.Error("socket for NOTIFY_SOCKET");
        }
        var socket = new SafeFd(fd);
        byte* address = memory.Allocate<byte>(Interop.SockAddrUnixSize);
        address[0] = Interop.AF_UNIX;
        name.CopyTo(new Span<byte>(address + 2, name.Length));
        int length = 2 + name.Length;
        if (name[0] == (byte)'@')
        {
            address[2] = 0; // abstract: a leading NUL, and the length counts no terminator
        }
        else
        {
            length++; // a path: with its NUL
        }
        return new ServiceNotifier(socket, address, length, memory.Allocate<byte>(MessageCapacity), maxConnections, everyMs);
    }

    /// <summary>Once serving: READY=1 with the first status.</summary>
    public void Ready(int active, long now)
    {
        Send(Utf8.TryWrite(Buffer, $"READY=1\nSTATUS=active {active}/{_limit} connections\n", out int n), n);
        _sentActive = active;
        _nextStatus = now + StatusIntervalMs;
        _nextWatchdog = now;
        Watchdog(now);
    }

    /// <summary>SIGHUP: the reload starts (MONOTONIC_USEC as Type=notify-reload requires).</summary>
    public void Reloading()
    {
        long usec = Stopwatch.GetTimestamp() / (Stopwatch.Frequency / 1_000_000);
        Send(Utf8.TryWrite(Buffer, $"RELOADING=1\nMONOTONIC_USEC={usec}\n", out int n), n);
    }

    /// <summary>The reload is done.</summary>
    public void Reloaded() => Send(Utf8.TryWrite(Buffer, $"READY=1\n", out int n), n);

    /// <summary>The first stop signal: draining.</summary>
    public void Stopping(int active) =>
        Send(Utf8.TryWrite(Buffer, $"STOPPING=1\nSTATUS=stopping: draining {active} connections\n", out int n), n);

    /// <summary>Sends STATUS= if the active count changed and a second has passed since the last; WATCHDOG=1 when due.</summary>
    public void Tick(int active, long now)
    {
        if (active != _sentActive && now >= _nextStatus)
        {
            Send(Utf8.TryWrite(Buffer, $"STATUS=active {active}/{_limit} connections\n", out int n), n);
            _sentActive = active;
            _nextStatus = now + StatusIntervalMs;
        }
        Watchdog(now);
    }

    /// <summary>When <see cref="Tick"/> has something to send: a changed status or the watchdog; <see cref="Drain.NoDeadline"/> if never.</summary>
    public long NextDeadline(int active)
    {
        long next = active != _sentActive ? _nextStatus : Drain.NoDeadline;
        return _watchdogEveryMs > 0 ? Math.Min(next, _nextWatchdog) : next;
    }

    private void Watchdog(long now)
    {
        if (_watchdogEveryMs > 0 && now >= _nextWatchdog)
        {
            Send(Utf8.TryWrite(Buffer, $"WATCHDOG=1\n", out int n), n);
            _nextWatchdog = now + _watchdogEveryMs;
        }
    }

    /// <summary>
    /// An upgrade's new parent, before its <see cref="Ready"/>: it is the service's main process now
    /// (systemd takes MAINPID= from a process other than the main one with NotifyAccess=all).
    /// </summary>
    public void MainPid(int pid) => Send(Utf8.TryWrite(Buffer, $"MAINPID={pid}\n", out int n), n);

    /// <summary>An upgrade's old parent, once the new one serves: the new one speaks for the service from now on; this one says nothing more.</summary>
    public void HandOver() => _handedOver = true;

    private bool _handedOver;

    private Span<byte> Buffer => new(_message, MessageCapacity);

    private void Send(bool formatted, int length)
    {
        if (formatted && !_handedOver)
        {
            Interop.SendTo(_socket.Fd, _message, (nuint)length, Interop.MSG_NOSIGNAL, _address, _addressLength);
        }
    }

    public void Dispose() => _socket.Dispose();
}
