using System.Net.Sockets;

namespace TcpFork;

/// <summary>
/// Decides, in the parent, whether a new connection gets a child (true) or is closed and logged
/// <c>deny … verify</c> (false). It runs on the parent's one thread before every fork, so it must keep
/// docs/fork-safety.md's invariants: no threads or tasks, no allocation. The API helps: the client is a
/// <c>ref struct</c> (it cannot be stored, captured into a lambda that outlives the call, or passed to
/// another thread), the hook is synchronous, and the parent measures each call and warns once on
/// stderr if a hook allocated. A hook that throws refuses that connection (<c>deny … verify</c>) and is
/// logged once per exception type; the parent serves on.
/// </summary>
public delegate bool VerifyConnection(ClientAddress client);

/// <summary>Observes, in the parent, a child that has ended; same rules as <see cref="VerifyConnection"/>. An exception it throws is logged once per type and the parent serves on.</summary>
public delegate void ChildExited(in ChildExit exit);

/// <summary>A client's address, valid only during a hook call. Allocation-free to inspect.</summary>
public readonly ref struct ClientAddress
{
    private readonly ref readonly SockAddr _address;

    internal ClientAddress(ref readonly SockAddr address) => _address = ref address;

    /// <summary>InterNetwork, InterNetworkV6 or Unix.</summary>
    public AddressFamily Family => _address.Family switch
    {
        Interop.AF_INET => AddressFamily.InterNetwork,
        Interop.AF_INET6 => AddressFamily.InterNetworkV6,
        _ => AddressFamily.Unix,
    };

    /// <summary>The client's TCP port (0 for a unix socket).</summary>
    public int Port => _address.Port;

    /// <summary>The address bytes (4 or 16), empty for a unix socket.</summary>
    public ReadOnlySpan<byte> Address => _address.IsUnix ? default : _address.AddressBytes;

    /// <summary>True if the client is in <paramref name="network"/>'s network, or for a unix-socket client in its uid range (allow or deny alike).</summary>
    public bool IsIn(AccessRule network)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (_address.IsUnix)
        {
            return network.MatchesUid(_address.Uid);
        }
        if (!PeerTable.TryAddress(_address, out UInt128 key))
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt128BigEndian(bytes, key);
        return network.Matches(bytes);
    }

    /// <summary>Formats <c>127.0.0.1:5555</c> / <c>[::1]:5555</c> into <paramref name="destination"/> without allocating.</summary>
    public bool TryFormat(Span<char> destination, out int charsWritten) => _address.TryFormat(destination, out charsWritten, default, null);

    /// <summary>The address as text (allocates: not for the parent's hot path).</summary>
    public override string ToString() => _address.ToString();
}

/// <summary>How a child ended.</summary>
public readonly struct ChildExit
{
    internal ChildExit(int pid, int status, TimeSpan duration)
    {
        ProcessId = pid;
        int signal = status & 0x7f;
        Signal = signal == 0 ? null : signal;
        ExitCode = signal == 0 ? (status >> 8) & 0xff : null;
        Duration = duration;
    }

    /// <summary>The child's pid.</summary>
    public int ProcessId { get; }

    /// <summary>Its exit status, if it exited.</summary>
    public int? ExitCode { get; }

    /// <summary>The signal that ended it, if one did.</summary>
    public int? Signal { get; }

    /// <summary>How long it ran (millisecond resolution).</summary>
    public TimeSpan Duration { get; }
}
