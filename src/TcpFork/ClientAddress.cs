using System.Net.Sockets;

namespace TcpFork;

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

