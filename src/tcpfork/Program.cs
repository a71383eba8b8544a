using System.CommandLine;
using TcpFork;
using TcpFork.Cli;

// tcpfork: a process-per-connection TCP server. Exit codes: 0 ok, 1 fatal runtime error, 2 usage error.
// A spawned child serves its connection before anything else: the parent parsed the command line and
// passed the child all it needs (an exec child's program too); parsing it again could read files.
if (args is ["echo" or "exec", ..] && TcpForkServer.TryServeSpawnedChild(EchoHandler.Handle, out int childExit))
{
    return childExit;
}
return Cli.Run(args);

namespace TcpFork.Cli
{
    internal static class Cli
    {
        public const int Ok = 0, Fatal = 1, Usage = 2;

        /// <summary>The longest reason an error line carries (a value given whole would make a line as long as it).</summary>
        private const int MaxReason = 400;

        public static int Run(string[] args)
        {
            RootCommand root = new("tcpfork: a process-per-connection TCP server; every connection runs in its own process.")
            {
                EchoCommand.Create(),
                ExecCommand.Create(),
                BenchCommand.Create(),
            };
            ParseResult parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                return UsageError(parsed.Errors[0].Message);
            }
            try
            {
                return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
            }
            catch (UsageException e)
            {
                return UsageError(e.Message);
            }
            catch (BindException e)
            {
                return FatalError(e.Message);
            }
            catch (SystemCallException e)
            {
                return FatalError(e.Message);
            }
            catch (ArgumentException e)
            {
                // The parser checks every value first; this is the net under it, never a stack trace.
                return UsageError(Describe(e));
            }
        }

        /// <summary>
        /// An ArgumentException's text without the runtime's parameter suffix (which UseSystemResourceKeys
        /// leaves as a resource key): the library's own message when it has no parameter name.
        /// </summary>
        public static string Describe(ArgumentException e)
        {
            string text = e.Message.Split('\n')[0];
            foreach (string suffix in (string[])[" Arg_ParamName_Name", " (Parameter '"])
            {
                int at = text.IndexOf(suffix, StringComparison.Ordinal);
                text = at >= 0 ? text[..at] : text;
            }
            return e.ParamName is { } name && !text.Contains(name, StringComparison.Ordinal) ? $"TcpForkServerOptions.{name}: {text}" : text;
        }

        public static int UsageError(string reason)
        {
            // One line, whatever the parser wrote (its enum errors list the choices on lines of their own).
            string oneLine = string.Join(", ", LibraryNames.ToFlags(reason).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            // Bad input echoed back: one terminal-safe line of bounded length, however long or odd the value.
            Console.Error.WriteLine($"tcpfork: usage: {Printable.Truncate(oneLine, MaxReason)} (see 'tcpfork --help')");
            return Usage;
        }

        public static int FatalError(string reason)
        {
            Console.Error.WriteLine($"tcpfork: fatal: {Printable.Truncate(LibraryNames.ToFlags(reason), MaxReason)}");
            return Fatal;
        }
    }

    /// <summary>Bad input found after parsing (e.g. an unknown host): exit 2.</summary>
    internal sealed class UsageException(string message, Exception? inner = null) : Exception(message, inner);
}
