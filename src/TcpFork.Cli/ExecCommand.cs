using System.CommandLine;

namespace TcpFork.Cli;

/// <summary>
/// <c>tcpfork exec [options] -- PROGRAM [ARGS…]</c>: a drop-in for ucspi-tcp's tcpserver. Each
/// connection runs PROGRAM with the socket on descriptors 0 and 1 and the UCSPI variables set.
/// </summary>
internal static class ExecCommand
{
    public static Command Create()
    {
        var server = new ServerOptionsBinder(exec: true);
        var program = new Argument<string[]>("PROGRAM")
        {
            Description = "The program to run for each connection, and its arguments, after --: tcpfork exec [options] -- PROGRAM [ARGS...].",
            Arity = ArgumentArity.OneOrMore,
        };
        var env = new Option<string[]>("--env", "-e")
        {
            Description = "Set KEY=VALUE in the program's environment, replacing tcpfork's own KEY; repeatable. UCSPI variables (PROTO, TCPREMOTEIP, …) cannot be set.",
            HelpName = "KEY=VALUE",
            AllowMultipleArgumentsPerToken = false,
            CustomParser = r =>
            {
                foreach (var t in r.Tokens)
                {
                    if (ExecProgram.CheckEnvironmentEntry(t.Value) is { } reason)
                    {
                        r.AddError($"--env {reason}");
                    }
                }
                return r.Tokens.Select(t => t.Value).ToArray();
            },
        };
        var localName = new Option<string?>("--local-name")
        {
            Description = "Value of TCPLOCALHOST (tcpserver's -l); tcpfork makes no DNS lookups.",
            HelpName = "NAME",
            CustomParser = r =>
            {
                string name = r.Tokens[^1].Value;
                if (ExecProgram.CheckLocalName(name) is { } reason)
                {
                    r.AddError($"--local-name: {reason}");
                }
                return name;
            },
        };
        var command = new Command("exec", "Run PROGRAM for each connection, tcpserver style: the socket on fd 0 and 1, UCSPI variables (PROTO, TCPREMOTEIP, …) in its environment.");
        server.AddTo(command);
        command.Options.Add(env);
        command.Options.Add(localName);
        command.Arguments.Add(program);
        command.SetAction(parsed =>
        {
            string[] argv = parsed.GetValue(program)!;
            if (argv[0].Length == 0)
            {
                throw new UsageException("the program to run (after --) is an empty name");
            }
            if (argv[0].StartsWith('-'))
            {
                // An unknown option before --: the parser took it for the program's name.
                throw new UsageException($"exec has no option '{Printable.Truncate(argv[0])}' (PROGRAM and its arguments go after --)");
            }
            var exec = new ExecProgram(argv[0], argv[1..]) { LocalName = parsed.GetValue(localName) };
            foreach (string kv in parsed.GetValue(env) ?? [])
            {
                exec.Environment.Add(kv);
            }
            return Serve.Run(TcpForkServer.ForProgram(exec, server.Bind(parsed)));
        });
        return command;
    }
}
