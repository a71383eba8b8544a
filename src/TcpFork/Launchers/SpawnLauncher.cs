using System.Buffers.Text;

namespace TcpFork;

/// <summary>
/// posix_spawn(3) of this same program in the hidden child role: the connection is duplicated onto
/// descriptor 3, every other descriptor above 2 is closed, the signal mask is emptied and every
/// disposition reset. Safe under JIT: glibc spawns with CLONE_VFORK and no managed code runs between
/// clone and exec. The command is built once in native memory; per connection only the connection
/// number in its environment is rewritten.
/// </summary>
internal sealed unsafe class SpawnLauncher : ILauncher
{
    private const int NumberDigits = ChildRole.NumberDigits;
    private readonly NativeCommand _command;
    private readonly SpawnAttributes _spawn = new();
    private readonly byte* _connectionNumber;
    private readonly byte* _fromSameIp;
    /// <summary>With the PROXY protocol on: the header's addresses for the child (else null).</summary>
    private readonly byte* _peer, _local;
    private readonly TlsServer? _tls;

    /// <summary>Spawns children in the role, given the parent's settings and its <paramref name="program"/> if it runs one.</summary>
    public SpawnLauncher(TcpForkServerOptions options, ExecProgram? program, TlsServer? tls = null)
    {
        _tls = tls;
        _ = tls?.HandOffFd; // made now, not at the first connection
        _command = NativeCommand.ThisProgram(remove: [SignalMask.ReexecVariable], add: ChildRole.Encode(options, program));
        _connectionNumber = _command.ValueOf(ChildRole.ConnectionVariable);
        _fromSameIp = _command.ValueOf(ChildRole.FromSameIpVariable);
        if (options.ProxyProtocol != ProxyProtocol.Off)
        {
            _peer = _command.ValueOf(ChildRole.PeerVariable);
            _local = _command.ValueOf(ChildRole.LocalVariable);
        }
    }

    public string Action => "spawn";

    /// <summary>
    /// The child is this same program: under NativeAOT a runtime that cannot start (no finalizer thread)
    /// makes it return -1 from main, silently: 255. Under the JIT the host prints "Failed to create CoreCLR,
    /// HRESULT: …" and exits with its CoreClrInitFailure code, 0x80008089: 137.
    /// </summary>
    public int StartFailureStatus { get; } = TcpForkServer.IsForkSupported ? 255 : 0x89;

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        var digits = new System.Buffers.StandardFormat('D', NumberDigits);
        Utf8Formatter.TryFormat(connection.Number, new Span<byte>(_connectionNumber, NumberDigits), out _, digits);
        Utf8Formatter.TryFormat(connection.FromSameIp, new Span<byte>(_fromSameIp, NumberDigits), out _, digits);
        if (_peer != null)
        {
            ChildRole.WriteAddress(_peer, connection.Peer, connection.Proxied);
            ChildRole.WriteAddress(_local, connection.Local, connection.Proxied);
        }

        int pid;
        int rc = Interop.PosixSpawn(&pid, _command.Path, _spawn.Connection(fd, [ChildRole.InheritedFd], _tls is null ? default : (_tls.HandOffFd, ChildRole.InheritedFd + 1)), _spawn.Attributes, _command.Argv, _command.Envp);
        _spawn.Done();
        error = (Errno)rc;
        return rc == 0 ? pid : -1;
    }

    public void Dispose()
    {
        _command.Dispose();
        _spawn.Dispose();
    }
}
