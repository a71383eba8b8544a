namespace TcpFork;

/// <summary>How tcpfork writes its log lines on stderr (docs/logging.md lists both forms).</summary>
public enum LogFormat
{
    /// <summary>One line of text an event, <c>tcpfork: end 123 status 0</c> (tcpserver's <c>-v</c> lines and tcpfork's own).</summary>
    Text,

    /// <summary>One JSON object an event, <c>{"ts":"…","event":"end","pid":123,"status":0}</c>: the text line's fields, named and typed.</summary>
    Json,
}
