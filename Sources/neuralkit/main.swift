import Foundation
import NeuralKit

/// The `neuralkit` command: trains and evaluates NeuralKit models from the shell.
let usage = """
    Usage: neuralkit <command> [options]

    Commands:
      mnist     Train the MNIST convolutional network and report test loss and accuracy.
      evaluate  Print a saved model's test loss and accuracy on an MNIST-layout data set.
      predict   Print a saved model's predicted classes for PNG images or IDX image files.

    Run 'neuralkit <command> --help' for the options of a command.
    """

let arguments = Array(CommandLine.arguments.dropFirst())
let exitCode: Int32
switch arguments.first {
case nil, "--help", "-h", "help":
    print(usage)
    exitCode = arguments.isEmpty ? 2 : 0
case "mnist":
    exitCode = runMNISTCommand(Array(arguments.dropFirst()))
case "evaluate":
    exitCode = runEvaluateCommand(Array(arguments.dropFirst()))
case "predict":
    exitCode = runPredictCommand(Array(arguments.dropFirst()))
default:
    FileHandle.standardError.write(Data("neuralkit: error: unknown command '\(arguments[0])'\n\n\(usage)\n".utf8))
    exitCode = 2
}
exit(exitCode)
