using System.Net.Sockets;

namespace TcpFork;

/// <summary>
/// The stream under a child's <see cref="System.Net.Security.SslStream"/>: the connection's own, plus a
/// deadline for the handshake. Until <see cref="Disarm"/> each read and write may take only what is
/// left of <see cref="TlsOptions.HandshakeTimeout"/> (SO_RCVTIMEO/SO_SNDTIMEO set to the rest before
/// each call), so a client that stalls, or trickles a byte at a time, cannot hold the child longer.
/// The handshake is synchronous: no thread, no timer.
/// </summary>
internal sealed class HandshakeDeadline(Socket socket, NetworkStream inner, TimeSpan timeout) : Stream
{
    private readonly long _deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
    private bool _armed = true;

    /// <summary>Asynchronous writes done synchronously (for close_notify at the end: no socket engine thread for one write).</summary>
    public bool SynchronousWrites { get; set; }

    /// <summary>The first byte the client sent, or -1: a TLS client's first record is a handshake (22).</summary>
    public int FirstByte { get; private set; } = -1;

    /// <summary>True once a read or write ran out of time.</summary>
    public bool Expired { get; private set; }

    /// <summary>After the handshake: no deadline, no timeouts.</summary>
    public void Disarm()
    {
        _armed = false;
        socket.ReceiveTimeout = 0;
        socket.SendTimeout = 0;
    }

    private void Arm()
    {
        if (!_armed)
        {
            return;
        }
        long left = _deadline - Environment.TickCount64;
        if (left <= 0)
        {
            Expired = true;
            throw new TimeoutException("handshake timed out");
        }
        int ms = (int)Math.Min(left, int.MaxValue);
        socket.ReceiveTimeout = ms;
        socket.SendTimeout = ms;
    }

    /// <summary>A read or write that ran out of time while armed, as the <see cref="TimeoutException"/> to throw.</summary>
    private bool TimedOut(IOException e) =>
        _armed && e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock };

    private TimeoutException Expire(IOException e)
    {
        Expired = true;
        return new TimeoutException("handshake timed out", e);
    }

    public override int Read(Span<byte> buffer)
    {
        Arm();
        try
        {
            int n = inner.Read(buffer);
            if (FirstByte < 0 && n > 0)
            {
                FirstByte = buffer[0];
            }
            return n;
        }
        catch (IOException e) when (TimedOut(e))
        {
            throw Expire(e);
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Arm();
        try
        {
            inner.Write(buffer);
        }
        catch (IOException e) when (TimedOut(e))
        {
            throw Expire(e);
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        _armed ? ValueTask.FromResult(Read(buffer.Span)) : inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_armed || SynchronousWrites)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }
}
