using System.CommandLine;
using System.CommandLine.Parsing;
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
                return UsageError(Explain(parsed, root));
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
            catch (InvalidOperationException e)
            {
                // The library's (fork mode without a single-threaded parent…); never a runtime resource key.
                return FatalError(IsResourceKey(e.Message) ? $"unexpected error (0x{e.HResult:x8})" : e.Message);
            }
            catch (IOException e)
            {
                // The runtime's I/O messages are resource keys in this build; on Linux its HResult is the errno.
                return FatalError($"I/O error: {SystemCallException.Describe(e.HResult)}");
            }
        }

        /// <summary>
        /// True for a runtime message the build stripped to its resource key (UseSystemResourceKeys):
        /// <c>IO_FileNotFound_FileName, /x</c>, <c>ArgumentOutOfRange_Generic_MustBeGreaterOrEqual, …</c>.
        /// </summary>
        public static bool IsResourceKey(string message)
        {
            int end = message.IndexOfAny([',', ' ']);
            string first = end < 0 ? message : message[..end];
            return first.Contains('_', StringComparison.Ordinal) && first.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
        }

        /// <summary>
        /// The first thing wrong with a command line, in tcpfork's words: System.CommandLine's own messages
        /// speak of "commands" and .NET types, so the cases it words are recognised by their shape here,
        /// and every option parses its own values (<see cref="OptionParsers"/>) and words its own errors.
        /// </summary>
        private static string Explain(ParseResult parsed, RootCommand root)
        {
            string commands = string.Join(", ", root.Subcommands.Select(c => c.Name).SkipLast(1)) + " or " + root.Subcommands[^1].Name;
            CommandResult command = parsed.CommandResult;
            if (command.Command == root)
            {
                return parsed.Tokens.FirstOrDefault()?.Value is not { } first ? $"no command given: give {commands}"
                    : first.StartsWith('-') ? $"unknown option '{Printable.Truncate(first)}': give {commands} first"
                    : $"unknown command '{Printable.Truncate(first)}': give {commands}";
            }
            foreach (OptionResult option in command.Children.OfType<OptionResult>())
            {
                if (!option.Implicit && option.Tokens.Count == 0 && option.Option.Arity.MinimumNumberOfValues > 0)
                {
                    return $"{option.Option.Name} needs a value: {option.Option.HelpName}";
                }
            }
            foreach (Argument argument in command.Command.Arguments)
            {
                if (argument.Arity.MinimumNumberOfValues > 0 && parsed.GetResult(argument) is not { Tokens.Count: > 0 })
                {
                    string what = argument.Description ?? "";
                    return $"{command.Command.Name} needs {argument.HelpName ?? argument.Name}{(what.Length > 0 ? $": {char.ToLowerInvariant(what[0])}{what[1..].TrimEnd('.')}" : "")}";
                }
            }
            if (parsed.UnmatchedTokens.FirstOrDefault() is { } unmatched)
            {
                return unmatched.StartsWith('-')
                    ? $"{command.Command.Name} has no option '{Printable.Truncate(unmatched)}'"
                    : $"{command.Command.Name} takes no argument '{Printable.Truncate(unmatched)}'";
            }
            return parsed.Errors[0].Message;
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
            if (text.Length == 0 || IsResourceKey(text))
            {
                // A runtime message stripped to its resource key (ArgumentOutOfRange_…): say what it means.
                text = "is out of range";
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
