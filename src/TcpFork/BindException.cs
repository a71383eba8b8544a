namespace TcpFork;

/// <summary>A listener could not be opened: the address and the reason (e.g. address in use).</summary>
public sealed class BindException : IOException
{
    internal BindException(SockAddr address, SystemCallException inner)
        : base($"unable to bind {address}: {SystemCallException.Describe(inner.Errno)}", inner)
    {
        Errno = inner.Errno;
    }

    /// <summary>The errno of the failed call.</summary>
    public int Errno { get; }
}
