using System.Net.Sockets;

namespace TcpFork;

/// <summary>
/// The stream under a child's <see cref="System.Net.Security.SslStream"/>: read(2) and send(2) on the
/// connection's descriptor, plus a deadline for the handshake. Until <see cref="Disarm"/> each read and
/// write first polls for at most what is left of <see cref="TlsOptions.HandshakeTimeout"/>, so a client
/// that stalls, or trickles a byte at a time, cannot hold the child longer. No Socket object and no
/// thread: a .NET Socket would start the runtime's socket engine thread in every child (measured: a
/// thread creation and a scheduler round trip per handshake). A handler's asynchronous reads and writes
/// after the handshake go through a NetworkStream made then (<see cref="Connection.Socket"/>).
/// </summary>
internal sealed unsafe class HandshakeDeadline(Connection connection, TimeSpan timeout) : UnseekableStream
{
    private readonly int _fd = connection.Handle;
    private readonly long _deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
    private bool _armed = true;
    private NetworkStream? _async;

    /// <summary>Asynchronous writes done synchronously (for close_notify at the end).</summary>
    public bool SynchronousWrites { get; set; }

    /// <summary>The first byte the client sent, or -1: a TLS client's first record is a handshake (22).</summary>
    public int FirstByte { get; private set; } = -1;

    /// <summary>True once a read or write ran out of time.</summary>
    public bool Expired { get; private set; }

    /// <summary>After the handshake: no deadline.</summary>
    public void Disarm() => _armed = false;

    /// <summary>Waits until the descriptor is ready for <paramref name="events"/>: within the deadline while armed, else for as long as it takes.</summary>
    private void Wait(short events)
    {
        while (true)
        {
            int ms = -1;
            if (_armed)
            {
                long left = _deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    Expired = true;
                    throw new TimeoutException("handshake timed out");
                }
                ms = (int)Math.Min(left, int.MaxValue);
            }
            int r = Interop.PollOne(_fd, events, ms);
            if (r > 0)
            {
                return;
            }
            if (r < 0 && Interop.LastError != Errno.EINTR)
            {
                throw Failure(Interop.LastError);
            }
        }
    }

    /// <summary>An I/O error whose HResult is the errno.</summary>
    private static IOException Failure(Errno e) => new(System.Text.Encoding.UTF8.GetString(Interop.ErrorText(e))) { HResult = (int)e };

    public override int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                if (_armed)
                {
                    Wait(Interop.POLLIN);
                }
                nint n = Interop.Read(_fd, p, (nuint)buffer.Length);
                if (n >= 0)
                {
                    if (FirstByte < 0 && n > 0)
                    {
                        FirstByte = p[0];
                    }
                    return (int)n;
                }
                Errno e = Interop.LastError;
                if (e != Errno.EAGAIN)
                {
                    throw Failure(e);
                }
                Wait(Interop.POLLIN); // non-blocking since a handler's asynchronous call
            }
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            for (int done = 0; done < buffer.Length;)
            {
                if (_armed)
                {
                    Wait(Interop.POLLOUT);
                }
                nint n = Interop.Send(_fd, p + done, (nuint)(buffer.Length - done));
                if (n >= 0)
                {
                    done += (int)n;
                    continue;
                }
                Errno e = Interop.LastError;
                if (e != Errno.EAGAIN)
                {
                    throw Failure(e);
                }
                Wait(Interop.POLLOUT);
            }
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    private NetworkStream Async => _async ??= new NetworkStream(connection.Socket, ownsSocket: false);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _armed ? ValueTask.FromResult(Read(buffer.Span)) : Async.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_armed || SynchronousWrites)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
        return Async.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _async?.Dispose();
        }
        base.Dispose(disposing);
    }
}
