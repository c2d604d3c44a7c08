"""Running the Pulumi program in-process, under the Pulumi SDK's mocks: no CLI, no engine, no cloud."""
