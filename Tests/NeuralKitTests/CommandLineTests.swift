import Foundation
import Testing

/// The `neuralkit` executable that `swift test` builds beside the test bundle.
let neuralKitExecutable: URL = {
    let bundle = Bundle.main.bundleURL
    let folder = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
    return folder.appendingPathComponent("neuralkit")
}()

/// Runs the `neuralkit` executable built beside the test bundle and returns its exit
/// status, standard output and standard error.
func runNeuralKit(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = neuralKitExecutable
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

@Suite struct CommandLineTests {
    @Test(arguments: [
        (["--epochs", "0"], "--epochs must be an integer of at least 1, got '0'"),
        (["--batch-size", "-1"], "--batch-size must be an integer of at least 1, got '-1'"),
        (["--validation-split", "1.5"], "--validation-split must be a number in [0, 1), got '1.5'"),
        (["--learning-rate=0"], "--learning-rate must be a number greater than 0 and at most 3.4e38 (a finite Float), got '0'"),
        (["--learning-rate", "1e39"], "--learning-rate must be a number greater than 0 and at most 3.4e38 (a finite Float), got '1e39'"),
        (["--data", ""], "--data needs a folder path, got ''"),
        (["--verbose", "3"], "--verbose must be an integer from 0 to 2, got '3'"),
        (["--loss", "hinge"], "--loss must be one of sparse, categorical, both, got 'hinge'"),
        (["--seed", "-4"], "--seed must be an integer from 0 to 18446744073709551615, got '-4'"),
        (["--epochs"], "option --epochs needs a value"),
        (["--epoch", "3"], "unknown option --epoch"),
    ])
    func invalidOptionRejected(arguments: [String], message: String) throws {
        let result = try runNeuralKit(["mnist"] + arguments)
        #expect(result.status == 2)
        #expect(result.error.contains(message), "\(result.error)")
        #expect(result.output.isEmpty)
    }

    @Test func missingDataFolderNamed() throws {
        let result = try runNeuralKit(["mnist", "--data", "/nonexistent/mnist-data"])
        #expect(result.status == 1)
        #expect(result.error.contains("/nonexistent/mnist-data: folder not found"), "\(result.error)")
    }

    @Test func folderWithoutFilesNamesMissingFile() throws {
        let folder = try temporaryFolder()
        let result = try runNeuralKit(["mnist", "--data", folder.path])
        #expect(result.status == 1)
        #expect(result.error.contains("train-images-idx3-ubyte.gz: file not found"), "\(result.error)")
    }

    @Test func limitBeyondTrainingSetRejected() throws {
        let result = try runNeuralKit(["mnist", "--limit", "60001", "--verbose", "0"])
        #expect(result.status == 1)
        #expect(result.error.contains("--limit 60001 exceeds the 60000 training samples"), "\(result.error)")
    }

    @Test func unwritableSaveFolderRejectedBeforeTraining() throws {
        let result = try runNeuralKit(["mnist", "--limit", "500", "--epochs", "1", "--verbose", "2", "--save", "/proc/model.nk"])
        #expect(result.status != 0)
        #expect(result.error.contains("--save '/proc/model.nk': cannot create files in /proc"), "\(result.error)")
        #expect(!result.output.contains("Epoch 1/1"), "\(result.output)")
    }

    @Test func validationSplitLeavingNoSampleNamesOption() throws {
        let result = try runNeuralKit(["mnist", "--limit", "1", "--verbose", "0"])
        #expect(result.status != 0)
        #expect(result.error.contains("--validation-split 0.2 of 1 training samples leaves 0 for training"), "\(result.error)")
    }

    @Test func helpListsEveryOption() throws {
        let result = try runNeuralKit(["mnist", "--help"])
        #expect(result.status == 0)
        for option in ["--loss", "--epochs", "--batch-size", "--validation-split", "--learning-rate", "--seed", "--data", "--limit", "--verbose"] {
            #expect(result.output.contains(option), "help lacks \(option)")
        }
        #expect(result.output.contains("(default: 25)"))
    }

    @Test func unknownCommandRejected() throws {
        let result = try runNeuralKit(["train"])
        #expect(result.status == 2)
        #expect(result.error.contains("unknown command 'train'"))
    }

    @Test func shortRunPrintsKerasLines() throws {
        let result = try runNeuralKit(["mnist", "--limit", "1000", "--epochs", "1", "--verbose", "2", "--loss", "both"])
        #expect(result.status == 0, "\(result.error)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("Epoch 1/1"))
        let epochLines = lines.filter { $0.hasPrefix("4/4 - ") }
        #expect(epochLines.count == 2, "\(result.output)")
        #expect(epochLines.allSatisfy { $0.contains(" - val_accuracy: ") }, "\(result.output)")
        let testLines = lines.filter { $0.range(of: #"^Test loss: \d+\.\d{4} / Test accuracy: \d\.\d{4}$"#, options: .regularExpression) != nil }
        #expect(testLines.count == 2, "\(result.output)")
        #expect(lines.contains { $0.hasPrefix("| sparse_categorical_crossentropy | ") })
        #expect(lines.contains { $0.hasPrefix("| categorical_crossentropy | ") })
    }
}
