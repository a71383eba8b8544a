namespace TcpFork.Cli;

/// <summary>Runs a server for a command, turning the library's exceptions into tcpfork's exit codes.</summary>
internal static class Serve
{
    public static int Run(TcpForkServer server)
    {
        try
        {
            return server.Run();
        }
        catch (NotSupportedException e)
        {
            throw new UsageException(e.Message, e);
        }
        catch (ArgumentException e)
        {
            // An option the library refuses (an --env entry, a value out of range): bad input found at start.
            throw new UsageException(Cli.Describe(e), e);
        }
        catch (FormatException e)
        {
            // Unknown hosts, users, groups, unreadable rules files: bad input found at start.
            throw new UsageException(e.Message, e);
        }
    }
}
