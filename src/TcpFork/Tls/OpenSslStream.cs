namespace TcpFork;

/// <summary>
/// <see cref="Connection.Stream"/> over an <see cref="OpenSslSession"/>: blocking reads and writes of
/// plaintext, for tcpfork's own services (the echo). Asynchronous calls complete synchronously: one
/// connection a process, and nothing else for the thread to do.
/// </summary>
internal sealed class OpenSslStream(OpenSslSession session) : UnseekableStream
{
    public override int Read(Span<byte> buffer) => session.Read(buffer);

    public override int Read(byte[] buffer, int offset, int count) => session.Read(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer) => session.Write(buffer);

    public override void Write(byte[] buffer, int offset, int count) => session.Write(buffer.AsSpan(offset, count));

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            session.Dispose();
        }
        base.Dispose(disposing);
    }
}
